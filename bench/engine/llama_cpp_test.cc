#include "bench/engine/llama_cpp.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "common/testing/status_matchers.h"
#include "common/testing/temp_dir.h"
#include "engine/gguf.h"
#include "engine/model.h"
#include "engine/tiny_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hangar::bench {
namespace {

using engine::GgufFile;
using engine::Model;
using ::hangar::testing::MakeTempDir;
using ::testing::HasSubstr;

// Output of `llama-bench -m llama-base-q8_0.gguf -p 512 -n 32 -t 2 -r 2
// -o json` (the file engine_bench writes; llama.cpp built from source at
// 16cc3c6, Release, GGML_NATIVE, no git metadata so build_commit "unknown"),
// captured on the 2-core development machine on 2026-11-27.
constexpr char kSample[] = R"json([
  {
    "build_commit": "unknown",
    "build_number": 0,
    "cpu_info": "Intel(R) Xeon(R) Processor @ 2.50GHz",
    "gpu_info": "",
    "backends": "CPU",
    "model_filename": "/tmp/hangar-bench/llama-base-q8_0.gguf",
    "model_type": "llama ?B Q8_0 (guessed)",
    "model_size": 116431872,
    "model_n_params": 109529856,
    "n_batch": 2048,
    "n_ubatch": 512,
    "n_threads": 2,
    "cpu_mask": "0x0",
    "cpu_strict": false,
    "poll": 50,
    "type_k": "f16",
    "type_v": "f16",
    "n_gpu_layers": 99,
    "n_cpu_moe": 0,
    "split_mode": "layer",
    "main_gpu": 0,
    "no_kv_offload": false,
    "flash_attn": false,
    "devices": "auto",
    "tensor_split": "0.00",
    "tensor_buft_overrides": "none",
    "use_mmap": true,
    "embeddings": false,
    "no_op_offload": 0,
    "no_host": false,
    "n_prompt": 512,
    "n_gen": 0,
    "n_depth": 0,
    "test_time": "2026-11-27T12:37:45Z",
    "avg_ns": 1179577258,
    "stddev_ns": 20914317,
    "avg_ts": 434.122044,
    "stddev_ts": 7.697136,
    "samples_ns": [ 1194365914, 1164788602 ],
    "samples_ts": [ 428.679, 439.565 ]
  },
  {
    "build_commit": "unknown",
    "build_number": 0,
    "cpu_info": "Intel(R) Xeon(R) Processor @ 2.50GHz",
    "gpu_info": "",
    "backends": "CPU",
    "model_filename": "/tmp/hangar-bench/llama-base-q8_0.gguf",
    "model_type": "llama ?B Q8_0 (guessed)",
    "model_size": 116431872,
    "model_n_params": 109529856,
    "n_batch": 2048,
    "n_ubatch": 512,
    "n_threads": 2,
    "cpu_mask": "0x0",
    "cpu_strict": false,
    "poll": 50,
    "type_k": "f16",
    "type_v": "f16",
    "n_gpu_layers": 99,
    "n_cpu_moe": 0,
    "split_mode": "layer",
    "main_gpu": 0,
    "no_kv_offload": false,
    "flash_attn": false,
    "devices": "auto",
    "tensor_split": "0.00",
    "tensor_buft_overrides": "none",
    "use_mmap": true,
    "embeddings": false,
    "no_op_offload": 0,
    "no_host": false,
    "n_prompt": 0,
    "n_gen": 32,
    "n_depth": 0,
    "test_time": "2026-11-27T12:37:49Z",
    "avg_ns": 332776636,
    "stddev_ns": 5454056,
    "avg_ts": 96.173514,
    "stddev_ts": 1.576240,
    "samples_ns": [ 328920036, 336633236 ],
    "samples_ts": [ 97.2881, 95.0589 ]
  }
]
)json";

TEST(ParseLlamaBenchJson, ReadsEveryTest) {
  ASSERT_OK_AND_ASSIGN(auto r, ParseLlamaBenchJson(kSample));
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].n_prompt, 512);
  EXPECT_EQ(r[0].n_gen, 0);
  EXPECT_EQ(r[0].n_threads, 2);
  EXPECT_DOUBLE_EQ(r[0].avg_ts, 434.122044);
  EXPECT_DOUBLE_EQ(r[0].stddev_ts, 7.697136);
  EXPECT_DOUBLE_EQ(r[0].best_ts, 439.565);
  EXPECT_EQ(r[0].model_type, "llama ?B Q8_0 (guessed)");
  EXPECT_EQ(r[0].backends, "CPU");
  EXPECT_EQ(r[0].build_commit, "unknown");
  EXPECT_EQ(r[0].cpu_info, "Intel(R) Xeon(R) Processor @ 2.50GHz");
  EXPECT_EQ(r[1].n_prompt, 0);
  EXPECT_EQ(r[1].n_gen, 32);
  EXPECT_EQ(r[1].n_threads, 2);
  EXPECT_DOUBLE_EQ(r[1].avg_ts, 96.173514);
  EXPECT_DOUBLE_EQ(r[1].best_ts, 97.2881);
}

TEST(ParseLlamaBenchJson, RejectsOtherOutput) {
  EXPECT_THAT(ParseLlamaBenchJson("| model | size |").status().message(),
              HasSubstr("not a JSON array"));
  EXPECT_THAT(
      ParseLlamaBenchJson(R"([{"n_prompt": 512, "n_gen": 0, "n_threads": 2}])")
          .status()
          .message(),
      HasSubstr("no number 'avg_ts'"));
  EXPECT_THAT(ParseLlamaBenchJson("[1]").status().message(),
              HasSubstr("not an object"));
  EXPECT_THAT(ParseLlamaBenchJson(R"([{"n_prompt": 0, "n_gen": 32,
      "n_threads": 1, "avg_ts": 5, "samples_ts": [4, "x"]}])")
                  .status()
                  .message(),
              HasSubstr("non-number sample"));
  ASSERT_OK_AND_ASSIGN(auto no_samples,
                       ParseLlamaBenchJson(R"([{"n_prompt": 0, "n_gen": 32,
      "n_threads": 1, "avg_ts": 5}])"));
  EXPECT_DOUBLE_EQ(no_samples[0].best_ts, 5);
  ASSERT_OK_AND_ASSIGN(auto empty, ParseLlamaBenchJson("[\n]\n"));
  EXPECT_TRUE(empty.empty());
}

// A stand-in llama-bench: a script that checks its arguments and prints the
// sample (or fails).
std::string FakeBench(const std::string& dir, const std::string& body) {
  std::string path = dir + "/llama-bench";
  std::ofstream(path) << "#!/bin/sh\n" << body;
  chmod(path.c_str(), 0755);
  return path;
}

TEST(RunLlamaBench, PassesArgumentsAndParsesStdout) {
  std::string dir = MakeTempDir("fake-llama-bench");
  std::ofstream(dir + "/sample.json") << kSample;
  std::string bench =
      FakeBench(dir,
                "echo 'log line on stderr' >&2\n"
                "[ \"$*\" = \"-m " +
                    dir +
                    "/my model.gguf -p 512 -n 32 -t 2 -o "
                    "json\" ] || { echo \"bad args: $*\" >&2; exit 3; }\n"
                    "cat '" +
                    dir + "/sample.json'\n");
  ASSERT_OK_AND_ASSIGN(auto r,
                       RunLlamaBench(bench, dir + "/my model.gguf",
                                     {"-p", "512", "-n", "32", "-t", "2"}));
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[1].n_gen, 32);
  auto bad = RunLlamaBench(bench, dir + "/other.gguf", {"-p", "1"});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(bad.status().message(), HasSubstr("exit status 3"));
  EXPECT_THAT(bad.status().message(), HasSubstr("bad args"));
}

TEST(RunLlamaBench, NonJsonOutputIsAnError) {
  std::string dir = MakeTempDir("fake-llama-bench-md");
  std::string bench = FakeBench(dir, "echo '| model | t/s |'\n");
  auto r = RunLlamaBench(bench, "m.gguf", {});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("not a JSON array"));
}

// Greedy ids of `steps` tokens after `prompt`, one Forward per token.
std::vector<int> Greedy(const Model& m, std::vector<int> prompt, int steps) {
  auto state =
      m.NewState(1, int(prompt.size()) + steps + 1, int(prompt.size()));
  EXPECT_OK(state.status());
  std::vector<float> logits(size_t(m.vocab_size()));
  std::vector<engine::ForwardRow> rows;
  for (size_t i = 0; i < prompt.size(); ++i)
    rows.push_back({0, int(i), prompt[i], i + 1 == prompt.size()});
  std::vector<int> out;
  int pos = int(prompt.size());
  for (int s = 0; s < steps; ++s) {
    EXPECT_OK(m.Forward(rows, state->get(), logits.data()));
    int id =
        int(std::max_element(logits.begin(), logits.end()) - logits.begin());
    out.push_back(id);
    rows = {{0, pos++, id, true}};
  }
  return out;
}

class WriteLlamaCppGgufTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("llama-cpp-gguf");
    engine::TinyModelOptions o;
    o.vocab_size = 3000;  // more rows than the trained tokenizer has
    // Rows of 256 and 512 weights, so that q4_k_m really holds K-quants.
    o.hidden_size = 256;
    o.intermediate_size = 512;
    o.max_position_embeddings = 256;
    ASSERT_OK(engine::WriteTinyModel(o, dir_));
  }
  std::string dir_;
  const std::vector<int> prompt_ = {0, 17, 250, 3, 99, 300, 42, 7};
};

TEST_F(WriteLlamaCppGgufTest, TokenListCoversEveryEmbeddingRow) {
  ASSERT_OK(engine::ConvertToGguf(dir_, dir_ + "/plain.gguf", "f32"));
  ASSERT_OK(WriteLlamaCppGguf(dir_, dir_ + "/padded.gguf", "f32"));
  ASSERT_OK_AND_ASSIGN(auto plain, GgufFile::Open(dir_ + "/plain.gguf"));
  ASSERT_OK_AND_ASSIGN(auto padded, GgufFile::Open(dir_ + "/padded.gguf"));
  const auto* embd = padded->FindTensor("token_embd.weight");
  ASSERT_NE(embd, nullptr);
  EXPECT_EQ(embd->dims[1], 3000);
  const auto& before = plain->Find("tokenizer.ggml.tokens")->strings;
  const auto& after = padded->Find("tokenizer.ggml.tokens")->strings;
  const auto& types = padded->Find("tokenizer.ggml.token_type")->numbers;
  ASSERT_LT(before.size(), 3000u);  // the case this pads
  ASSERT_EQ(after.size(), 3000u);
  ASSERT_EQ(types.size(), 3000u);
  for (size_t i = 0; i < before.size(); ++i) EXPECT_EQ(after[i], before[i]);
  EXPECT_EQ(after[2999], "[PAD2999]");
  EXPECT_EQ(types[2999], 5);
  // Every other key and every tensor is carried over unchanged.
  EXPECT_EQ(padded->metadata().size(), plain->metadata().size());
  EXPECT_EQ(padded->Find("tokenizer.ggml.merges")->strings,
            plain->Find("tokenizer.ggml.merges")->strings);
  EXPECT_EQ(padded->Find("llama.block_count")->AsInt(),
            plain->Find("llama.block_count")->AsInt());
  ASSERT_EQ(padded->tensors().size(), plain->tensors().size());
  for (const auto& [name, t] : plain->tensors()) {
    const auto* u = padded->FindTensor(name);
    ASSERT_NE(u, nullptr) << name;
    EXPECT_EQ(u->type, t.type) << name;
    EXPECT_EQ(u->dims, t.dims) << name;
    ASSERT_EQ(u->nbytes, t.nbytes) << name;
    EXPECT_EQ(std::memcmp(u->data, t.data, size_t(t.nbytes)), 0) << name;
  }
}

TEST_F(WriteLlamaCppGgufTest, F32GivesTheSafetensorsGreedyIds) {
  ASSERT_OK(WriteLlamaCppGguf(dir_, dir_ + "/f32.gguf", "f32"));
  ASSERT_OK_AND_ASSIGN(auto hf, Model::Load(dir_, {.threads = 2}));
  ASSERT_OK_AND_ASSIGN(auto gg,
                       Model::Load(dir_ + "/f32.gguf", {.threads = 2}));
  EXPECT_EQ(gg->info().format, "gguf");
  EXPECT_EQ(gg->vocab_size(), 3000);
  auto want = Greedy(*hf, prompt_, 16);
  EXPECT_EQ(Greedy(*gg, prompt_, 16), want);
  // The tokenizer is the same one, padding aside.
  ASSERT_OK_AND_ASSIGN(auto a, hf->tokenizer().Encode("The pilot checked"));
  ASSERT_OK_AND_ASSIGN(auto b, gg->tokenizer().Encode("The pilot checked"));
  EXPECT_EQ(a, b);
}

TEST_F(WriteLlamaCppGgufTest, QuantizedGivesTheUnpaddedFilesGreedyIds) {
  for (const std::string type : {"q8_0", "q4_k_m"}) {
    ASSERT_OK(engine::ConvertToGguf(dir_, dir_ + "/plain.gguf", type));
    ASSERT_OK(WriteLlamaCppGguf(dir_, dir_ + "/padded.gguf", type));
    ASSERT_OK_AND_ASSIGN(auto plain,
                         Model::Load(dir_ + "/plain.gguf", {.threads = 2}));
    ASSERT_OK_AND_ASSIGN(auto padded,
                         Model::Load(dir_ + "/padded.gguf", {.threads = 2}));
    EXPECT_EQ(padded->info().weight_dtype, plain->info().weight_dtype) << type;
    ASSERT_OK_AND_ASSIGN(auto file, GgufFile::Open(dir_ + "/padded.gguf"));
    EXPECT_EQ(file->FindTensor("blk.0.ffn_up.weight")->type,
              type == "q8_0" ? uint32_t(engine::kGgmlQ8_0)
                             : uint32_t(engine::kGgmlQ4_K))
        << type;
    EXPECT_EQ(Greedy(*padded, prompt_, 16), Greedy(*plain, prompt_, 16))
        << type;
  }
}

TEST(WriteLlamaCppGguf, MissingSourceIsAnError) {
  std::string dir = MakeTempDir("llama-cpp-gguf-missing");
  EXPECT_FALSE(WriteLlamaCppGguf(dir, dir + "/x.gguf", "f32").ok());
  EXPECT_FALSE(WriteLlamaCppGguf(dir, dir + "/x.gguf", "q9").ok());
}

}  // namespace
}  // namespace hangar::bench
