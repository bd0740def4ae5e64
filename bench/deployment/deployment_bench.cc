// deployment_bench: issue 13's targets for the deployment service, measured
// in one run against one private PostgreSQL.
//
//   deployment_bench [--duration=15] [--warmup=2] [--clients=16]
//                    [--pgbench_duration=5] [--paced_rate=300]
//                    [--paced_duration=10] [--get_interval_ms=5]
//                    [--db_pool_size=8] [--statements] [--quick]
//
// Everything runs on this host (about 50 s by default, 22 s with --quick):
//  1. A private PostgreSQL 15 (common/testing/postgres_server.h: initdb in a
//     temporary directory, fsync and synchronous_commit off, as every test
//     uses it).
//  2. The real DeploymentServer in this process on loopback port 0, over
//     its own database on that cluster, with in-memory fakes for everything
//     outside it (services/deployment/testing): the catalog's and the
//     scheduler's facts, and the reconciler's catalog, optimizer and
//     scheduler clients answering at once (model prepared, ENGINE_NONE so
//     no optimizer job, replicas READY when applied). No other process, so
//     a create costs what the deployment service and PostgreSQL cost,
//     including the reconciler's passes that take each new deployment to
//     DEPLOYED, not the dependencies' RPCs. 64 deployments are created for
//     GetDeployment to read.
//  3. The baseline, while the service idles: pgbench on the same cluster
//     (its own database), `--clients` clients, `--pgbench_duration`
//     seconds, a custom script of one single-row INSERT per transaction,
//     pgbench's default simple protocol. Its tps is the single-row insert
//     rate. Then (info) pgbench runs the SQL one create sends today (two
//     transactions, twelve statements, the JSON bodies of a real deployment)
//     against a copy of the schema's shape: what the SQL alone allows.
//  4. Idle: the GetDeployment client below alone for 3 s (the machine's
//     floor; other work on the host shows here).
//  5. Closed loop: `--clients` threads calling CreateDeployment (distinct
//     request ids and display names, 10 s deadlines) over 4 channels for
//     `--warmup` + `--duration` seconds; only calls that end inside the
//     measured window count. Meanwhile one more client on its own channel
//     calls GetDeployment on one of the 64 every `--get_interval_ms`
//     (paced; a late call starts the next at once) and records latencies.
//  6. Paced: the same, each client paced so that together they offer
//     `--paced_rate` creates/s (issue 13's 300/s), for `--paced_duration`
//     seconds: GetDeployment's latency at the target load, not at
//     saturation.
//
// Prints the machine, the durations, pgbench's rates, creates/s, the ratios,
// GetDeployment's p50/p99, and one line per target:
//
//   TARGET | <what> | <measured> | <target> | PASS|MISS
//
// (scripts/perf-report.sh collects those lines from every benchmark). It
// also prints, from pg_stat_database, how many transactions and rows each
// create cost; --statements loads pg_stat_statements and lists the
// statements the service ran per create (this adds some overhead to both
// pgbench and the service, so the rates of such a run are not the
// reference).
//
// Exits 0 whether or not the targets are met; 1 when something could not
// run or any call failed.
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <pqxx/pqxx>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/testing/child_process.h"
#include "common/testing/postgres_server.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/grpcpp.h"
#include "hangar/v1/deployment.grpc.pb.h"
#include "services/deployment/deployment_server.h"
#include "services/deployment/testing/fake_clients.h"
#include "services/deployment/testing/fake_facts.h"

namespace hangar {
namespace {

using deployment::DeploymentServer;

constexpr char kModel[] = "BenchOrg/Tiny-Chat";
constexpr char kOffering[] = "a10g-1x";
constexpr int64_t kGiB = int64_t{1} << 30;
constexpr int kGetTargets = 64;

// Issue 13's targets.
constexpr double kTargetCreatesPerSecond = 300;
constexpr double kTargetRatio = 0.5;
constexpr double kTargetGetP99Ms = 5;

struct Flags {
  double duration_s = 15;
  double warmup_s = 2;
  int clients = 16;
  double pgbench_duration_s = 5;
  // The second phase's aggregate create rate (0: skip it) and duration.
  double paced_rate = 300;
  double paced_duration_s = 10;
  // GetDeployment alone, before the load.
  double idle_duration_s = 3;
  int get_interval_ms = 5;
  // The service's own default pool size.
  int db_pool_size = DeploymentServer::Options{}.db_pool_size;
  bool statements = false;
  std::string pg_bin_dir = "/usr/lib/postgresql/15/bin";
};

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "deployment_bench: %s\n", message.c_str());
  std::exit(1);
}

void Usage() {
  std::fprintf(
      stderr,
      "usage: deployment_bench [--duration=SECONDS] [--warmup=SECONDS] "
      "[--clients=N] [--pgbench_duration=SECONDS] [--paced_rate=PER_SECOND] "
      "[--paced_duration=SECONDS] [--get_interval_ms=MS] [--db_pool_size=N] "
      "[--pg_bin_dir=DIR] [--statements] [--quick]\n"
      "  defaults: --duration=15 --warmup=2 --clients=16 "
      "--pgbench_duration=5 --paced_rate=300 --paced_duration=10 "
      "--get_interval_ms=5 --db_pool_size=8 (the service's default)\n"
      "  --quick: --duration=3 --warmup=1 --pgbench_duration=3 "
      "--paced_duration=3 (and 2 s of GetDeployment alone instead of 3)\n"
      "  --paced_rate=0 skips the paced phase\n");
  std::exit(2);
}

Flags ParseFlags(int argc, char** argv) {
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value;
    if (const size_t eq = arg.find('='); eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    } else if (arg != "--quick" && arg != "--statements" && i + 1 < argc) {
      value = argv[++i];
    }
    auto number = [&](double min) {
      double parsed = 0;
      if (!absl::SimpleAtod(value, &parsed) || !(parsed >= min)) {
        std::fprintf(stderr, "%s: must be a number >= %g; was \"%s\"\n",
                     arg.c_str(), min, value.c_str());
        Usage();
      }
      return parsed;
    };
    if (arg == "--quick") {
      flags.duration_s = 3;
      flags.warmup_s = 1;
      flags.pgbench_duration_s = 3;
      flags.paced_duration_s = 3;
      flags.idle_duration_s = 2;
    } else if (arg == "--statements") {
      flags.statements = true;
    } else if (arg == "--duration") {
      flags.duration_s = number(1);
    } else if (arg == "--warmup") {
      flags.warmup_s = number(0);
    } else if (arg == "--clients") {
      flags.clients = static_cast<int>(number(1));
    } else if (arg == "--pgbench_duration") {
      flags.pgbench_duration_s = number(1);
    } else if (arg == "--paced_rate") {
      flags.paced_rate = number(0);
    } else if (arg == "--paced_duration") {
      flags.paced_duration_s = number(1);
    } else if (arg == "--get_interval_ms") {
      flags.get_interval_ms = static_cast<int>(number(1));
    } else if (arg == "--db_pool_size") {
      flags.db_pool_size = static_cast<int>(number(1));
    } else if (arg == "--pg_bin_dir") {
      flags.pg_bin_dir = value;
    } else {
      Usage();
    }
  }
  return flags;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
}

std::string LoadAverage() {
  return std::string(absl::StripAsciiWhitespace(ReadFile("/proc/loadavg")));
}

// "Intel(R) Xeon(R) ..., 2 online CPUs, AVX2 yes, AVX-512F yes, Linux 6.1".
std::string Machine() {
  std::string model = "unknown CPU";
  bool avx2 = false, avx512 = false;
  for (absl::string_view line :
       absl::StrSplit(ReadFile("/proc/cpuinfo"), '\n')) {
    if (absl::StartsWith(line, "model name") && model == "unknown CPU") {
      model = std::string(absl::StripAsciiWhitespace(
          line.substr(std::min(line.size(), line.find(':') + 1))));
    }
    if (absl::StartsWith(line, "flags")) {
      const std::string flags = absl::StrCat(line, " ");
      avx2 = absl::StrContains(flags, " avx2 ");
      avx512 = absl::StrContains(flags, " avx512f ");
    }
  }
  struct utsname name;
  std::string kernel = "unknown";
  if (uname(&name) == 0) kernel = absl::StrCat(name.sysname, " ", name.release);
  return absl::StrCat(model, ", ", sysconf(_SC_NPROCESSORS_ONLN),
                      " online CPUs, AVX2 ", avx2 ? "yes" : "no", ", AVX-512F ",
                      avx512 ? "yes" : "no", ", ", kernel);
}

struct Percentiles {
  double p50_ms = 0;
  double p99_ms = 0;
  size_t count = 0;
};

Percentiles Summarize(std::vector<double> samples) {
  Percentiles result;
  result.count = samples.size();
  if (samples.empty()) return result;
  std::sort(samples.begin(), samples.end());
  auto at = [&](double q) {
    return samples[std::min(samples.size() - 1,
                            static_cast<size_t>(q * samples.size()))];
  };
  result.p50_ms = at(0.50);
  result.p99_ms = at(0.99);
  return result;
}

void PrintTarget(const std::string& what, const std::string& measured,
                 const std::string& target, bool met) {
  std::printf("TARGET | %s | %s | %s | %s\n", what.c_str(), measured.c_str(),
              target.c_str(), met ? "PASS" : "MISS");
}

std::unique_ptr<grpc::ClientContext> Context() {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(10));
  return context;
}

// ---------------------------------------------------------------------------
// pgbench

struct PgbenchResult {
  double tps = 0;
  double latency_ms = 0;
};

// The tables pgbench writes, in their own database: `inserts` for the
// single-row baseline, and a copy of the shape of the deployment schema's
// first migration (request ids, deployments with a partial unique display
// name index, revisions referencing them) for the create-shaped script.
constexpr char kPgbenchSchema[] = R"sql(
CREATE TABLE inserts (
  id bigserial PRIMARY KEY, client integer NOT NULL, payload text NOT NULL,
  created timestamptz NOT NULL DEFAULT now());
CREATE TABLE deployments (
  name text PRIMARY KEY, display_name text NOT NULL, model text NOT NULL,
  state smallint NOT NULL, version bigint NOT NULL DEFAULT 1,
  body jsonb NOT NULL);
CREATE UNIQUE INDEX deployments_live_display_name
  ON deployments (display_name) WHERE state <> 9;
CREATE INDEX deployments_model ON deployments (model);
CREATE TABLE revisions (
  deployment text NOT NULL REFERENCES deployments (name),
  number bigint NOT NULL, body jsonb NOT NULL,
  PRIMARY KEY (deployment, number));
CREATE TABLE request_ids (
  kind text NOT NULL, request_id text NOT NULL, fingerprint text NOT NULL,
  resource text NOT NULL, create_micros bigint NOT NULL,
  PRIMARY KEY (kind, request_id));
)sql";

constexpr char kInsertScript[] =
    "INSERT INTO inserts (client, payload) VALUES (:client_id, "
    "'hangar-bench');\n";

// What one CreateDeployment sends PostgreSQL today (see the README: the
// retry lookup in its own read-only transaction, then the claim, the display
// name check and two inserts in a second one; each transaction opens with
// the deadline's SET LOCAL). The JSON bodies come as pgbench variables
// (-D deployment=... -D revision=...), bound as parameters like the store's.
constexpr char kCreateShapedScript[] =
    "\\set n random(1, 9000000000000000000)\n"
    "BEGIN;\n"
    "SET LOCAL statement_timeout = 9900;\n"
    "SET TRANSACTION ISOLATION LEVEL READ COMMITTED READ ONLY;\n"
    "SELECT fingerprint, resource FROM request_ids WHERE kind = 'create' "
    "AND request_id = 'r' || :n;\n"
    "COMMIT;\n"
    "BEGIN;\n"
    "SET LOCAL statement_timeout = 9900;\n"
    "INSERT INTO request_ids VALUES ('create', 'r' || :n, 'fingerprint', "
    "'d' || :n, 0) ON CONFLICT DO NOTHING;\n"
    "SELECT 1 FROM deployments WHERE display_name = 'n' || :n AND state "
    "<> 9;\n"
    "INSERT INTO deployments VALUES ('d' || :n, 'n' || :n, 'model', 1, 1, "
    "CAST(:deployment AS jsonb));\n"
    "INSERT INTO revisions VALUES ('d' || :n, 1, CAST(:revision AS jsonb));\n"
    "COMMIT;\n";

// The same writes as one statement (data-modifying CTEs, no explicit
// transaction, the display name left to the partial unique index): what a
// store that spends one round trip per create would allow.
constexpr char kOneStatementScript[] =
    "\\set n random(1, 9000000000000000000)\n"
    "WITH claim AS (INSERT INTO request_ids VALUES ('create', 'r' || :n, "
    "'fingerprint', 'd' || :n, 0) ON CONFLICT DO NOTHING RETURNING resource), "
    "deployment AS (INSERT INTO deployments SELECT resource, 'n' || :n, "
    "'model', 1, 1, CAST(:deployment AS jsonb) FROM claim RETURNING name) "
    "INSERT INTO revisions SELECT name, 1, CAST(:revision AS jsonb) FROM "
    "deployment;\n";

// Runs `script` with pgbench against `database` (`mode`: the query
// protocol).
PgbenchResult RunPgbench(const Flags& flags, testing::PostgresServer& pg,
                         const std::string& database,
                         const std::string& script_text,
                         const std::string& mode,
                         const std::vector<std::string>& defines = {}) {
  char dir[] = "/tmp/deployment-bench-XXXXXX";
  if (mkdtemp(dir) == nullptr) Die("mkdtemp failed");
  const std::string script = absl::StrCat(dir, "/script.sql");
  {
    std::ofstream out(script);
    out << script_text;
  }
  const int threads = std::max(
      1, std::min<int>(flags.clients, std::thread::hardware_concurrency()));
  std::vector<std::string> argv = {
      absl::StrCat(flags.pg_bin_dir, "/pgbench"),
      "-n",  // No vacuum: pgbench's own tables do not exist.
      "-M",
      mode,
      "-f",
      script,
      "-c",
      absl::StrCat(flags.clients),
      "-j",
      absl::StrCat(threads),
      "-T",
      absl::StrCat(static_cast<int>(std::lround(flags.pgbench_duration_s))),
      "-h",
      pg.host(),
      "-p",
      absl::StrCat(pg.port()),
      "-U",
      "postgres",
      database};
  std::string shown = absl::StrJoin(argv, " ");
  for (const std::string& define : defines) {
    argv.insert(argv.begin() + 1, {"-D", define});
    const std::string name = define.substr(0, define.find('='));
    absl::StrAppend(&shown, " -D ", name, "=<", define.size() - name.size() - 1,
                    " bytes>");
  }
  std::printf("  %s\n", shown.c_str());
  std::fflush(stdout);
  absl::StatusOr<std::unique_ptr<testing::ChildProcess>> child =
      testing::ChildProcess::Start(argv);
  if (!child.ok()) Die(std::string(child.status().message()));
  absl::StatusOr<int> code = (*child)->Wait(
      absl::Seconds(flags.pgbench_duration_s) + absl::Seconds(60));
  const std::string output = (*child)->Output();
  std::remove(script.c_str());
  rmdir(dir);
  if (!code.ok() || *code != 0) {
    Die(absl::StrCat("pgbench failed: ", output));
  }
  PgbenchResult result;
  for (absl::string_view line : absl::StrSplit(output, '\n')) {
    // "tps = 12345.678901 (without initial connection time)"
    if (absl::StartsWith(line, "tps = ")) {
      std::vector<absl::string_view> words = absl::StrSplit(line, ' ');
      if (words.size() >= 3) (void)absl::SimpleAtod(words[2], &result.tps);
    }
    // "latency average = 1.234 ms"
    if (absl::StartsWith(line, "latency average = ")) {
      std::vector<absl::string_view> words = absl::StrSplit(line, ' ');
      if (words.size() >= 4) {
        (void)absl::SimpleAtod(words[3], &result.latency_ms);
      }
    }
  }
  if (result.tps <= 0) {
    Die(absl::StrCat("no tps in pgbench's output: ", output));
  }
  return result;
}

// ---------------------------------------------------------------------------
// The deployment service

v1::CreateDeploymentRequest CreateRequest(const v1::DeploymentSpec& spec,
                                          int64_t n) {
  v1::CreateDeploymentRequest request;
  *request.mutable_spec() = spec;
  request.set_request_id(absl::StrCat("bench-create-", n));
  request.set_display_name(absl::StrCat("bench-", n));
  request.set_description("deployment_bench");
  request.add_tags("bench");
  return request;
}

struct DatabaseCounters {
  int64_t commits = 0;
  int64_t inserted = 0;
};

DatabaseCounters ReadCounters(pqxx::connection& connection) {
  pqxx::nontransaction tx(connection);
  // The statistics of this backend's transaction are a snapshot; clear it
  // so every read sees the collector's latest numbers.
  tx.exec("SELECT pg_stat_clear_snapshot()");
  pqxx::row row = tx.exec1(
      "SELECT xact_commit, tup_inserted FROM pg_stat_database "
      "WHERE datname = current_database()");
  return {row[0].as<int64_t>(), row[1].as<int64_t>()};
}

void PrintStatements(pqxx::connection& connection, int64_t creates) {
  pqxx::nontransaction tx(connection);
  // SET LOCAL statement_timeout carries the remaining deadline: one row per
  // value, so numbers are folded.
  pqxx::result rows = tx.exec(
      "SELECT sum(calls)::bigint, sum(total_exec_time), q FROM ("
      "  SELECT calls, total_exec_time, left(regexp_replace(regexp_replace("
      "    query, '\\s+', ' ', 'g'), '= [0-9]+', '= N', 'g'), 110) AS q"
      "  FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database"
      "  WHERE datname = current_database())) s "
      "GROUP BY q ORDER BY 1 DESC LIMIT 20");
  std::printf(
      "statements the service ran (pg_stat_statements, whole run: %lld "
      "creates, the gets, the migrations):\n",
      static_cast<long long>(creates));
  std::printf("  %9s %8s %10s  %s\n", "calls", "/create", "mean ms", "query");
  for (const pqxx::row& row : rows) {
    const int64_t calls = row[0].as<int64_t>();
    std::printf("  %9lld %8.2f %10.4f  %s\n", static_cast<long long>(calls),
                static_cast<double>(calls) / std::max<int64_t>(1, creates),
                row[1].as<double>() / std::max<int64_t>(1, calls),
                row[2].as<std::string>().c_str());
  }
}

// One load phase: `clients` threads calling CreateDeployment, closed-loop
// (rate 0) or each paced at rate / clients per second, and one paced
// GetDeployment reader; only calls that end inside the measured window
// count.
struct PhaseResult {
  int64_t creates = 0;
  double creates_per_s = 0;
  Percentiles create_latency;
  Percentiles get_latency;
  double transactions_per_create = 0;
  double rows_per_create = 0;
  int64_t failures = 0;
  std::string first_failure;
  // "DEPLOYED 9000, PENDING 12" at the end of the phase: whether the
  // reconciler kept up.
  std::string states;
};

// Deployments per state, straight from the service's table (info only).
std::string StateCounts(pqxx::connection& connection) {
  try {
    pqxx::nontransaction tx(connection);
    pqxx::result rows = tx.exec(
        "SELECT state, count(*) FROM deployment.deployments GROUP BY state "
        "ORDER BY 2 DESC");
    std::vector<std::string> parts;
    for (const pqxx::row& row : rows) {
      const int state = row[0].as<int>();
      std::string name = v1::DeploymentState_IsValid(state)
                             ? v1::DeploymentState_Name(
                                   static_cast<v1::DeploymentState>(state))
                             : absl::StrCat(state);
      parts.push_back(absl::StrCat(absl::StripPrefix(name, "DEPLOYMENT_STATE_"),
                                   " ", row[1].as<int64_t>()));
    }
    return absl::StrJoin(parts, ", ");
  } catch (const std::exception& e) {
    return absl::StrCat("unknown (", e.what(), ")");
  }
}

class Load {
 public:
  Load(const Flags& flags, const std::string& address,
       const std::string& conninfo, const v1::DeploymentSpec& spec)
      : flags_(flags), address_(address), conninfo_(conninfo), spec_(spec) {
    for (int i = 0; i < 4; ++i) {
      grpc::ChannelArguments args;
      args.SetInt("bench_channel", i);  // Distinct connections.
      channels_.push_back(grpc::CreateCustomChannel(
          address, grpc::InsecureChannelCredentials(), args));
    }
  }

  // Creates the deployments GetDeployment reads.
  void Setup() {
    auto stub = v1::DeploymentService::NewStub(channels_[0]);
    for (int i = 0; i < kGetTargets; ++i) {
      v1::Deployment created;
      grpc::Status status = stub->CreateDeployment(
          Context().get(), CreateRequest(spec_, next_++), &created);
      if (!status.ok()) Die("CreateDeployment: " + status.error_message());
      targets_.push_back(created.name());
      last_ = created;
    }
  }
  // The last deployment Setup() created.
  const v1::Deployment& sample() const { return last_; }
  int64_t started() const { return next_.load(); }

  PhaseResult Run(int clients, double rate, double warmup_s,
                  double duration_s) {
    absl::Mutex mu;
    PhaseResult result;
    std::vector<double> create_ms, get_ms;
    std::atomic<int64_t> creates{0};
    const absl::Time window_start = absl::Now() + absl::Seconds(warmup_s);
    const absl::Time end = window_start + absl::Seconds(duration_s);
    auto failed = [&](const std::string& call, const grpc::Status& status) {
      absl::MutexLock lock(&mu);
      if (result.failures++ == 0) {
        result.first_failure = absl::StrCat(call, " ", status.error_code(),
                                            ": ", status.error_message());
      }
    };
    std::vector<std::thread> threads;
    for (int c = 0; c < clients; ++c) {
      threads.emplace_back([&, c] {
        auto stub =
            v1::DeploymentService::NewStub(channels_[c % channels_.size()]);
        const absl::Duration interval =
            rate > 0 ? absl::Seconds(clients / rate) : absl::ZeroDuration();
        absl::Time next_call = absl::Now() + interval * c / clients;
        std::vector<double> latencies;
        while (absl::Now() < end) {
          if (rate > 0) {
            absl::SleepFor(next_call - absl::Now());
            next_call = std::max(next_call + interval, absl::Now());
          }
          const v1::CreateDeploymentRequest request =
              CreateRequest(spec_, next_.fetch_add(1));
          v1::Deployment created;
          const absl::Time call_start = absl::Now();
          grpc::Status status =
              stub->CreateDeployment(Context().get(), request, &created);
          const absl::Time call_end = absl::Now();
          if (!status.ok()) {
            failed("CreateDeployment", status);
          } else if (call_end >= window_start && call_end <= end) {
            ++creates;
            latencies.push_back(
                absl::ToDoubleMilliseconds(call_end - call_start));
          }
        }
        absl::MutexLock lock(&mu);
        create_ms.insert(create_ms.end(), latencies.begin(), latencies.end());
      });
    }
    // The reader: its own connection, paced; a late call starts the next
    // at once.
    threads.emplace_back([&] {
      auto stub = v1::DeploymentService::NewStub(
          grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
      std::mt19937 rng(7);
      std::uniform_int_distribution<size_t> pick(0, targets_.size() - 1);
      const absl::Duration interval =
          absl::Milliseconds(flags_.get_interval_ms);
      absl::SleepFor(window_start - absl::Now());
      absl::Time next_call = absl::Now();
      while (absl::Now() < end) {
        v1::GetDeploymentRequest request;
        request.set_name(targets_[pick(rng)]);
        v1::Deployment got;
        const absl::Time call_start = absl::Now();
        grpc::Status status =
            stub->GetDeployment(Context().get(), request, &got);
        const absl::Time call_end = absl::Now();
        if (!status.ok() || got.name() != request.name()) {
          failed("GetDeployment", status);
        } else {
          absl::MutexLock lock(&mu);
          get_ms.push_back(absl::ToDoubleMilliseconds(call_end - call_start));
        }
        next_call += interval;
        if (next_call > call_end) {
          absl::SleepFor(next_call - call_end);
        } else {
          next_call = call_end;
        }
      }
    });
    // The database's counters over the measured window (the statistics
    // reach pg_stat_database up to a second late: approximate).
    pqxx::connection stats(conninfo_);
    absl::SleepFor(window_start - absl::Now());
    const DatabaseCounters before = ReadCounters(stats);
    const int64_t started_before = next_.load();
    absl::SleepFor(end - absl::Now());
    const DatabaseCounters after = ReadCounters(stats);
    const double started = static_cast<double>(next_.load() - started_before);
    for (std::thread& thread : threads) thread.join();
    result.states = StateCounts(stats);

    result.creates = creates.load();
    result.creates_per_s = static_cast<double>(result.creates) / duration_s;
    result.create_latency = Summarize(create_ms);
    result.get_latency = Summarize(get_ms);
    if (started > 0 && clients > 0) {
      // Each get is one transaction of its own.
      result.transactions_per_create =
          (static_cast<double>(after.commits - before.commits) -
           static_cast<double>(result.get_latency.count)) /
          started;
      result.rows_per_create =
          static_cast<double>(after.inserted - before.inserted) / started;
    }
    return result;
  }

 private:
  const Flags& flags_;
  const std::string address_;
  const std::string conninfo_;
  const v1::DeploymentSpec spec_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::string> targets_;
  std::atomic<int64_t> next_{0};
  v1::Deployment last_;
};

void PrintPhase(const std::string& name, const Flags& flags, double duration_s,
                const PhaseResult& r) {
  std::printf(
      "%s: CreateDeployment %lld in %.0f s = %.0f/s, latency p50 %.2f ms, p99 "
      "%.2f ms; GetDeployment %zu calls, p50 %.3f ms, p99 %.3f ms; per "
      "create %.2f transactions, %.2f rows inserted (pg_stat_database); "
      "deployments by state at the end: %s\n",
      name.c_str(), static_cast<long long>(r.creates), duration_s,
      r.creates_per_s, r.create_latency.p50_ms, r.create_latency.p99_ms,
      r.get_latency.count, r.get_latency.p50_ms, r.get_latency.p99_ms,
      r.transactions_per_create, r.rows_per_create, r.states.c_str());
  std::fflush(stdout);
}

int Main(const Flags& flags) {
  std::printf("deployment_bench: %s\n", Machine().c_str());
  std::printf("load average at the start: %s\n", LoadAverage().c_str());
  std::printf(
      "durations: pgbench %.0f s per script; GetDeployment alone %.0f s; "
      "CreateDeployment closed-loop warm-up %.0f s + measured %.0f s; %s; %d "
      "clients; GetDeployment every %d ms; service pool %d connections\n",
      flags.pgbench_duration_s, flags.idle_duration_s, flags.warmup_s,
      flags.duration_s,
      flags.paced_rate > 0
          ? absl::StrFormat("then paced at %.0f/s: warm-up %.0f s + measured "
                            "%.0f s",
                            flags.paced_rate, flags.warmup_s,
                            flags.paced_duration_s)
                .c_str()
          : "no paced phase",
      flags.clients, flags.get_interval_ms, flags.db_pool_size);
  std::printf(
      "dependencies: in-memory fakes (no catalog, optimizer or scheduler "
      "process): the facts, and the reconciler's clients answering at once "
      "(model prepared, ENGINE_NONE, replicas READY when applied), so each "
      "create is also reconciled to DEPLOYED; this measures the deployment "
      "service's control plane over PostgreSQL\n");
  std::fflush(stdout);

  testing::PostgresServerOptions pg_options;
  pg_options.bin_dir = flags.pg_bin_dir;
  if (flags.statements) {
    pg_options.settings = {"shared_preload_libraries=pg_stat_statements",
                           "pg_stat_statements.track=all",
                           "pg_stat_statements.track_utility=on"};
  }
  absl::StatusOr<std::unique_ptr<testing::PostgresServer>> pg =
      testing::PostgresServer::Start(pg_options);
  if (!pg.ok()) Die(std::string(pg.status().message()));
  absl::StatusOr<std::string> pgbench_db =
      (*pg)->CreateDatabase("pgbench_inserts");
  if (!pgbench_db.ok()) Die(std::string(pgbench_db.status().message()));
  absl::StatusOr<std::string> conninfo = (*pg)->CreateDatabase("deployment");
  if (!conninfo.ok()) Die(std::string(conninfo.status().message()));
  try {
    pqxx::connection connection(*pgbench_db);
    pqxx::nontransaction(connection).exec0(kPgbenchSchema);
    if (flags.statements) {
      pqxx::connection service_db(*conninfo);
      pqxx::nontransaction(service_db)
          .exec0("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
    }
  } catch (const std::exception& e) {
    Die(absl::StrCat("preparing the databases: ", e.what()));
  }

  // The service.
  deployment::testing::FakeModelFacts models;
  deployment::testing::FakeOfferingFacts offerings;
  {
    deployment::ModelFacts model;
    model.ready = true;
    model.context_length = 2048;
    model.license = "apache-2.0";
    model.recipes["ENGINE_NONE"] = {.weight_bytes = 2 * kGiB,
                                    .kv_bytes_per_sequence = 64 << 20};
    models.Set(kModel, model);
    deployment::OfferingFacts offering;
    offering.gpu_model = "NVIDIA A10G";
    offering.gpu_count = 1;
    offering.gpu_memory_bytes = 24 * kGiB;
    offering.hourly_price_micros = 1'818'000;
    offerings.Set(kOffering, offering);
  }
  // The reconciler's dependencies answer at once: the model is prepared,
  // ENGINE_NONE needs no optimizer job, replicas are READY when applied.
  deployment::testing::FakeCatalogClient catalog;
  deployment::testing::FakeOptimizerClient optimizer;
  deployment::testing::FakeSchedulerClient scheduler;
  scheduler.SetAutoReady(true);
  DeploymentServer::Options options;
  options.server = {.name = "deployment",
                    .port = 0,
                    .metrics_port = -1,
                    .drain_timeout = absl::Seconds(1)};
  options.db = *conninfo;
  options.db_pool_size = flags.db_pool_size;
  options.gateway_endpoint = "127.0.0.1:7100";
  options.model_facts = &models;
  options.offering_facts = &offerings;
  options.catalog_client = &catalog;
  options.optimizer_client = &optimizer;
  options.scheduler_client = &scheduler;
  absl::StatusOr<std::unique_ptr<DeploymentServer>> server =
      DeploymentServer::Create(std::move(options));
  if (!server.ok()) Die(std::string(server.status().message()));

  // The spec, with the terms accepted as the Review step shows them.
  v1::DeploymentSpec spec;
  spec.set_model(kModel);
  spec.set_hardware(kOffering);
  {
    auto stub = v1::DeploymentService::NewStub(grpc::CreateChannel(
        (*server)->address(), grpc::InsecureChannelCredentials()));
    v1::ValidateDeploymentRequest request;
    *request.mutable_spec() = spec;
    v1::ValidateDeploymentResponse response;
    grpc::Status status =
        stub->ValidateDeployment(Context().get(), request, &response);
    if (!status.ok() || !response.valid()) {
      Die(absl::StrCat("ValidateDeployment: ", status.error_message(), " ",
                       response.DebugString()));
    }
    spec.set_accept_terms(true);
    spec.set_accepted_terms_sha256(response.terms_sha256());
  }
  Load load(flags, (*server)->address(), *conninfo, spec);
  load.Setup();

  // 1. pgbench on the same cluster while the service is idle: the baseline,
  // then (info) what a create's statements cost without the service.
  std::printf("pgbench (%d clients, %.0f s each):\n", flags.clients,
              flags.pgbench_duration_s);
  const PgbenchResult single =
      RunPgbench(flags, **pg, "pgbench_inserts", kInsertScript, "simple");
  std::printf(
      "  single-row INSERT (pgbench's default simple protocol): %.0f tps, "
      "latency average %.3f ms\n",
      single.tps, single.latency_ms);
  std::string deployment_json, revision_json;
  {
    v1::Deployment body = load.sample();
    body.clear_etag();
    (void)google::protobuf::util::MessageToJsonString(body, &deployment_json);
    v1::Revision revision;
    revision.set_number(1);
    *revision.mutable_spec() = body.spec();
    revision.set_state(body.state());
    revision.set_state_reason(body.state_reason());
    revision.set_author("admin");
    *revision.mutable_create_time() = body.create_time();
    (void)google::protobuf::util::MessageToJsonString(revision, &revision_json);
  }
  const PgbenchResult shaped = RunPgbench(
      flags, **pg, "pgbench_inserts", kCreateShapedScript, "extended",
      {"deployment=" + deployment_json, "revision=" + revision_json});
  std::printf(
      "  (info) a create's SQL (2 transactions, 12 statements, %zu + %zu "
      "bytes of JSON), extended protocol: %.0f tps = %.3fx the single-row "
      "rate\n",
      deployment_json.size(), revision_json.size(), shaped.tps,
      shaped.tps / single.tps);
  const PgbenchResult one = RunPgbench(
      flags, **pg, "pgbench_inserts", kOneStatementScript, "extended",
      {"deployment=" + deployment_json, "revision=" + revision_json});
  std::printf(
      "  (info) the same three inserts as one statement (data-modifying CTEs, "
      "autocommit), extended protocol: %.0f tps = %.3fx the single-row rate\n",
      one.tps, one.tps / single.tps);
  std::fflush(stdout);

  // GetDeployment alone: the machine's floor (other work on it shows here).
  const PhaseResult idle = load.Run(0, 0, 0, flags.idle_duration_s);
  std::printf(
      "idle: GetDeployment alone, %zu calls in %.0f s, p50 %.3f ms, p99 %.3f "
      "ms\n",
      idle.get_latency.count, flags.idle_duration_s, idle.get_latency.p50_ms,
      idle.get_latency.p99_ms);
  // 2. Closed loop: the sustained rate.
  const PhaseResult closed =
      load.Run(flags.clients, 0, flags.warmup_s, flags.duration_s);
  PrintPhase(absl::StrCat("closed loop, ", flags.clients, " clients"), flags,
             flags.duration_s, closed);
  // 3. Paced at the target rate: GetDeployment at that load.
  PhaseResult paced;
  if (flags.paced_rate > 0) {
    paced = load.Run(flags.clients, flags.paced_rate, flags.warmup_s,
                     flags.paced_duration_s);
    PrintPhase(absl::StrFormat("paced at %.0f/s, %d clients", flags.paced_rate,
                               flags.clients),
               flags, flags.paced_duration_s, paced);
  }
  std::printf("load average at the end: %s\n", LoadAverage().c_str());

  const double ratio = closed.creates_per_s / single.tps;
  std::printf(
      "ratios: creates/s vs single-row INSERT/s %.3fx; creates/s vs the "
      "create's SQL run by pgbench %.3fx (the service's own share)\n",
      ratio, closed.creates_per_s / shaped.tps);
  PrintTarget(absl::StrCat("CreateDeployment/s, ", flags.clients,
                           " clients, closed loop"),
              absl::StrFormat("%.0f/s", closed.creates_per_s),
              absl::StrFormat(">= %.0f/s", kTargetCreatesPerSecond),
              closed.creates_per_s >= kTargetCreatesPerSecond);
  PrintTarget("CreateDeployment/s vs pgbench single-row INSERT/s",
              absl::StrFormat("%.3fx", ratio),
              absl::StrFormat(">= %.1fx", kTargetRatio), ratio >= kTargetRatio);
  if (flags.paced_rate > 0) {
    PrintTarget(
        absl::StrFormat("GetDeployment p99 at %.0f creates/s (achieved %.0f/s)",
                        flags.paced_rate, paced.creates_per_s),
        absl::StrFormat("%.3f ms", paced.get_latency.p99_ms),
        absl::StrFormat("< %.0f ms", kTargetGetP99Ms),
        paced.get_latency.count > 0 &&
            paced.get_latency.p99_ms < kTargetGetP99Ms &&
            paced.creates_per_s >= 0.95 * flags.paced_rate);
  }
  std::printf(
      "  (info) GetDeployment p99 at the closed-loop (saturating) load: %.3f "
      "ms\n",
      closed.get_latency.p99_ms);
  if (flags.statements) {
    pqxx::connection stats(*conninfo);
    PrintStatements(stats, load.started());
  }
  std::fflush(stdout);

  server->reset();
  const int64_t failures = idle.failures + closed.failures + paced.failures;
  if (failures > 0) {
    std::fprintf(stderr, "deployment_bench: %lld calls failed; first: %s\n",
                 static_cast<long long>(failures),
                 (idle.failures > 0     ? idle
                  : closed.failures > 0 ? closed
                                        : paced)
                     .first_failure.c_str());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace hangar

int main(int argc, char** argv) {
  return hangar::Main(hangar::ParseFlags(argc, argv));
}
