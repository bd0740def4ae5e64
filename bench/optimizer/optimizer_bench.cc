// optimizer_bench: conversion speed, memory and quality of the optimizer's
// recipes, as ratios measured in one run (issue 10, "Targets").
//
//   optimizer_bench [--dir /tmp/hangar-bench] [--quick]
//
// It generates (once, cached in --dir, shared with engine_bench) the ~110 M
// parameter random Llama model ("base"; --quick: the ~15 M "small"), then:
//  1. copy baseline: reads the source weights in 8 MiB chunks and writes
//     them to a new file in --dir (warm page cache, no fsync), MB/s;
//  2. for int8 and bfloat16, in a forked child (so its resident memory is
//     its own): the optimizer's converter (services/optimizer/converter.h,
//     what hangar-optimize runs) into --dir, timing the conversion phase
//     (from the first tensor read to the last written, before the fsync)
//     and sampling VmRSS after every tensor; the child reports the peak, its
//     resident memory just before converting (the fixed overhead: the
//     process, the loaded source's metadata) and the quality report.
// Conversion runs on one core (the quality report may use every core).
// Throughput = source weight bytes / conversion seconds.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "engine/file_util.h"
#include "engine/safetensors.h"
#include "engine/tiny_model.h"
#include "services/optimizer/converter.h"

namespace {

using namespace hangar::engine;
using Clock = std::chrono::steady_clock;

int64_t StatusKb(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0)
      return std::atoll(line.c_str() + std::strlen(key));
  }
  return 0;
}

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

struct Result {
  double convert_s = 0;
  int64_t rss_before_kb = 0, rss_peak_kb = 0;
  double size_ratio = 0, greedy = 0, max_err = 0, mean_kl = 0;
  int ok = 0;
};

// Converts in a child process and returns what it measured.
Result ConvertInChild(const std::string& src, const std::string& out,
                      const std::string& engine, const std::string& q) {
  int fds[2];
  if (::pipe(fds) != 0) std::exit(1);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    Result r;
    auto report = hangar::optimizer::ConvertModel(
        {.source = src,
         .output_dir = out,
         .recipe = {engine, q},
         .progress = [&](const hangar::optimizer::ConvertProgress& p) {
           if (p.stage == "planning") {
             r.rss_before_kb = StatusKb("VmRSS:");
           } else if (p.stage == "converting") {
             r.rss_peak_kb = std::max(r.rss_peak_kb, StatusKb("VmRSS:"));
           }
         }});
    if (report.ok()) {
      r.ok = 1;
      r.convert_s = report->convert_seconds;
      r.size_ratio = report->size_ratio;
      r.greedy = report->greedy_agreement;
      r.max_err = report->max_abs_logit_error;
      r.mean_kl = report->mean_kl;
    } else {
      std::fprintf(stderr, "convert %s: %s\n", q.c_str(),
                   std::string(report.status().message()).c_str());
    }
    (void)!::write(fds[1], &r, sizeof(r));
    ::_exit(0);
  }
  ::close(fds[1]);
  Result r;
  if (::read(fds[0], &r, sizeof(r)) != sizeof(r)) r.ok = 0;
  ::close(fds[0]);
  ::waitpid(pid, nullptr, 0);
  return r;
}

double CopyMBs(const std::string& src, const std::string& dst, int64_t* bytes) {
  std::vector<char> buf(8 << 20);
  auto start = Clock::now();
  std::ifstream in(src, std::ios::binary);
  std::ofstream out(dst, std::ios::binary | std::ios::trunc);
  *bytes = 0;
  while (in.read(buf.data(), std::streamsize(buf.size())) || in.gcount() > 0) {
    out.write(buf.data(), in.gcount());
    *bytes += in.gcount();
  }
  out.close();
  double s = Seconds(start, Clock::now());
  std::remove(dst.c_str());
  return double(*bytes) / 1e6 / s;
}

const char* Verdict(bool ok) { return ok ? "MET" : "MISSED"; }

}  // namespace

int main(int argc, char** argv) {
  std::string dir = "/tmp/hangar-bench";
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--dir" && i + 1 < argc)
      dir = argv[++i];
    else if (a.rfind("--dir=", 0) == 0)
      dir = a.substr(6);
    else if (a == "--quick")
      quick = true;
    else {
      std::fprintf(stderr, "usage: optimizer_bench [--dir DIR] [--quick]\n");
      return 2;
    }
  }
  const std::string preset = quick ? "small" : "base";
  const std::string src = dir + "/" + preset + "-f32";
  if (!FileExists(src + "/model.safetensors")) {
    std::fprintf(stderr, "generating %s model in %s ...\n", preset.c_str(),
                 src.c_str());
    auto o = TinyModelPreset(preset);
    if (!o.ok() || !WriteTinyModel(*o, src).ok()) return 1;
  }
  auto st = SafetensorsFile::Open(src + "/model.safetensors");
  if (!st.ok()) return 1;
  int64_t largest = 0, params = 0;
  for (const auto& [name, t] : (*st)->tensors()) {
    largest = std::max(largest, t.nbytes);
    params += t.elements();
  }
  st->reset();

  int64_t bytes = 0;
  CopyMBs(src + "/model.safetensors", dir + "/copy.tmp",
          &bytes);  // Warm the cache.
  double copy =
      std::max(CopyMBs(src + "/model.safetensors", dir + "/copy.tmp", &bytes),
               CopyMBs(src + "/model.safetensors", dir + "/copy.tmp", &bytes));

  std::printf(
      "optimizer_bench: %s preset, %.1f M parameters, %.1f MB float32 weights, "
      "largest tensor %.1f MB\n",
      preset.c_str(), double(params) / 1e6, double(bytes) / 1e6,
      double(largest) / 1e6);
  std::printf("plain read+write copy: %.0f MB/s\n\n", copy);
  std::printf("%-10s %9s %7s %11s %11s %10s %9s %8s %9s\n", "recipe",
              "conv MB/s", "x copy", "RSS before", "RSS peak", "peak-base",
              "size", "greedy", "max err");
  Result int8, bf16;
  for (const char* q : {"int8", "bfloat16"}) {
    std::string out = dir + "/bench-" + q;
    std::system(("rm -rf '" + out + "'").c_str());
    Result r = ConvertInChild(src, out, "CTRANSLATE2", q);
    std::system(("rm -rf '" + out + "'").c_str());
    if (!r.ok) return 1;
    double mbs = double(bytes) / 1e6 / r.convert_s;
    std::printf(
        "%-10s %9.0f %7.2f %8.1f MB %8.1f MB %7.1f MB %9.3f %7.1f%% %9.4f\n", q,
        mbs, mbs / copy, r.rss_before_kb / 1e3, r.rss_peak_kb / 1e3,
        (r.rss_peak_kb - r.rss_before_kb) / 1e3, r.size_ratio, 100 * r.greedy,
        r.max_err);
    (std::string(q) == "int8" ? int8 : bf16) = r;
  }
  const double int8_mbs = double(bytes) / 1e6 / int8.convert_s;
  const double peak_over = (int8.rss_peak_kb - int8.rss_before_kb) * 1e3;
  std::printf("\ntargets (issue 10):\n");
  std::printf("  int8 conversion >= 200 MB/s on one core:      %.0f MB/s  %s\n",
              int8_mbs, Verdict(int8_mbs >= 200));
  std::printf("  int8 conversion >= 0.5x plain copy:           %.2fx  %s\n",
              int8_mbs / copy, Verdict(int8_mbs / copy >= 0.5));
  std::printf(
      "  peak RSS during int8 conversion <= 1.5x largest tensor + fixed "
      "overhead:\n"
      "    overhead (RSS just before converting) %.1f MB; peak - overhead %.1f "
      "MB = %.2fx largest tensor  %s\n",
      int8.rss_before_kb / 1e3, peak_over / 1e6, peak_over / double(largest),
      Verdict(peak_over <= 1.5 * double(largest)));
  std::printf("  int8 artifact <= 0.27x float32 size:          %.3fx  %s\n",
              int8.size_ratio, Verdict(int8.size_ratio <= 0.27));
  std::printf("  greedy agreement int8 >= 90%%:                 %.1f%%  %s\n",
              100 * int8.greedy, Verdict(int8.greedy >= 0.9));
  std::printf("  greedy agreement bf16 >= 98%%:                 %.1f%%  %s\n",
              100 * bf16.greedy, Verdict(bf16.greedy >= 0.98));
  // The same, one line per target, as scripts/perf-report.sh collects them.
  auto target = [](const char* what, const std::string& measured,
                   const char* goal, bool ok) {
    std::printf("TARGET | %s | %s | %s | %s\n", what, measured.c_str(), goal,
                ok ? "PASS" : "MISS");
  };
  target("int8 conversion on one core", absl::StrFormat("%.0f MB/s", int8_mbs),
         ">= 200 MB/s", int8_mbs >= 200);
  target("int8 conversion vs plain copy",
         absl::StrFormat("%.2fx", int8_mbs / copy), ">= 0.5x",
         int8_mbs / copy >= 0.5);
  target("peak RSS during int8 conversion - overhead, vs largest tensor",
         absl::StrFormat("%.2fx", peak_over / double(largest)), "<= 1.5x",
         peak_over <= 1.5 * double(largest));
  target("int8 artifact vs float32 size",
         absl::StrFormat("%.3fx", int8.size_ratio), "<= 0.27x",
         int8.size_ratio <= 0.27);
  target("greedy agreement int8", absl::StrFormat("%.1f%%", 100 * int8.greedy),
         ">= 90%", int8.greedy >= 0.9);
  target("greedy agreement bf16", absl::StrFormat("%.1f%%", 100 * bf16.greedy),
         ">= 98%", bf16.greedy >= 0.98);
  return 0;
}
