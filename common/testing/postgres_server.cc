#include "common/testing/postgres_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <pqxx/connection>
#include <pqxx/nontransaction>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/testing/ports.h"
#include "common/util/file.h"

namespace hangar::testing {
namespace {

// How often waits re-check their condition (process exit, server ready).
constexpr absl::Duration kPollInterval = absl::Milliseconds(10);

std::string ErrnoMessage(absl::string_view what) {
  return absl::StrCat(what, ": ", std::strerror(errno));
}

struct Credentials {
  bool switch_user = false;
  uid_t uid = 0;
  gid_t gid = 0;
};

// fork + exec `argv` with stdout/stderr appended to `log_path`, as the given
// user, dying with SIGQUIT when the forking thread exits. Only
// async-signal-safe calls happen between fork and exec.
absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& args,
                            const std::string& log_path,
                            const Credentials& credentials) {
  std::vector<char*> argv;
  for (const std::string& arg : args)
    argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return absl::InternalError(ErrnoMessage("fork"));
  if (pid == 0) {
    ::setpgid(0, 0);  // Keep terminal signals meant for the test away.
    if (credentials.switch_user) {
      if (::setgroups(0, nullptr) != 0 || ::setgid(credentials.gid) != 0 ||
          ::setuid(credentials.uid) != 0) {
        ::_exit(126);
      }
    }
    ::prctl(PR_SET_PDEATHSIG, SIGQUIT);
    if (::getppid() != parent) ::_exit(125);
    int null_fd = ::open("/dev/null", O_RDONLY);
    int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (null_fd < 0 || log_fd < 0) ::_exit(124);
    ::dup2(null_fd, 0);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    ::syscall(SYS_close_range, 3u, ~0u, 0u);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

// Waits for `pid` to exit, up to `deadline`. Returns its wait status, or
// DEADLINE_EXCEEDED.
absl::StatusOr<int> WaitForExit(pid_t pid, absl::Time deadline) {
  while (true) {
    int status = 0;
    pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) return status;
    if (done < 0 && errno != EINTR) {
      return absl::InternalError(ErrnoMessage("waitpid"));
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError("process did not exit in time");
    }
    absl::SleepFor(kPollInterval);
  }
}

std::string DescribeExit(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exit code ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("signal ", WTERMSIG(status));
  return "unknown exit";
}

std::string ReadTail(const std::string& path, int lines) {
  absl::StatusOr<std::string> contents = ReadFileToString(path);
  if (!contents.ok()) return "";
  std::vector<std::string> all =
      absl::StrSplit(*contents, '\n', absl::SkipEmpty());
  const size_t first = all.size() > static_cast<size_t>(lines)
                           ? all.size() - static_cast<size_t>(lines)
                           : 0;
  return absl::StrJoin(all.begin() + first, all.end(), "\n");
}

bool IsValidDatabaseName(absl::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  if (!(absl::ascii_islower(name[0]) || name[0] == '_')) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '_';
  });
}

}  // namespace

PostgresServer::PostgresServer(const PostgresServerOptions& options)
    : options_(options) {}

absl::StatusOr<std::unique_ptr<PostgresServer>> PostgresServer::Start(
    const PostgresServerOptions& options) {
  if (options.start_timeout <= absl::ZeroDuration() ||
      options.stop_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "start_timeout and stop_timeout must be positive");
  }
  for (const char* binary : {"initdb", "postgres"}) {
    const std::string path = absl::StrCat(options.bin_dir, "/", binary);
    if (::access(path.c_str(), X_OK) != 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          path,
          " is missing; install postgresql-15 (scripts/install-deps.sh)"));
    }
  }
  auto server = std::unique_ptr<PostgresServer>(new PostgresServer(options));
  absl::Status status = server->Init();
  if (!status.ok()) return status;
  // Another process may take the chosen port between picking and binding;
  // then pick again.
  for (int attempt = 1;; ++attempt) {
    absl::StatusOr<int> port = PickFreeLoopbackPort();
    if (!port.ok()) return port.status();
    server->port_ = *port;
    status = server->Launch();
    if (status.ok()) return server;
    if (attempt >= 3 || !absl::StrContains(server->LogTail(), "could not")) {
      return status;
    }
  }
}

absl::Status PostgresServer::Init() {
  std::string base = options_.base_dir;
  if (base.empty()) {
    const char* tmpdir = std::getenv("TMPDIR");
    base = (tmpdir != nullptr && *tmpdir != '\0') ? tmpdir : "/tmp";
  }
  std::string pattern = absl::StrCat(base, "/hangar-pg-XXXXXX");
  if (::mkdtemp(pattern.data()) == nullptr) {
    return absl::InternalError(ErrnoMessage(absl::StrCat("mkdtemp ", pattern)));
  }
  dir_ = pattern;
  if (::geteuid() == 0) {
    struct passwd* user = ::getpwnam(options_.run_as_user.c_str());
    if (user == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("running as root, and PostgreSQL refuses root: user ",
                       options_.run_as_user,
                       " is needed to run the server but does not "
                       "exist"));
    }
    as_other_user_ = true;
    uid_ = user->pw_uid;
    gid_ = user->pw_gid;
    if (::chown(dir_.c_str(), uid_, gid_) != 0) {
      return absl::InternalError(ErrnoMessage(absl::StrCat("chown ", dir_)));
    }
  }
  const std::string log = absl::StrCat(dir_, "/initdb.log");
  absl::StatusOr<pid_t> pid =
      Spawn({absl::StrCat(options_.bin_dir, "/initdb"), "-D",
             absl::StrCat(dir_, "/data"), "-U", "postgres", "--auth=trust",
             "--no-sync", "--encoding=UTF8", "--locale=C", "--no-instructions"},
            log, {as_other_user_, uid_, gid_});
  if (!pid.ok()) return pid.status();
  absl::StatusOr<int> exit =
      WaitForExit(*pid, absl::Now() + options_.start_timeout);
  if (!exit.ok()) {
    ::kill(*pid, SIGKILL);
    (void)WaitForExit(*pid, absl::InfiniteFuture());
    return absl::DeadlineExceededError(absl::StrCat(
        "initdb did not finish within ",
        absl::FormatDuration(options_.start_timeout), ": ", ReadTail(log, 10)));
  }
  if (!WIFEXITED(*exit) || WEXITSTATUS(*exit) != 0) {
    return absl::InternalError(absl::StrCat(
        "initdb failed (", DescribeExit(*exit), "): ", ReadTail(log, 10)));
  }
  return absl::OkStatus();
}

absl::Status PostgresServer::Launch() {
  std::vector<std::string> args = {
      absl::StrCat(options_.bin_dir, "/postgres"),
      "-D",
      absl::StrCat(dir_, "/data"),
      "-p",
      absl::StrCat(port_),
      "-k",
      dir_,
      "-c",
      absl::StrCat("listen_addresses=", host_),
      "-c",
      "fsync=off",
      "-c",
      "synchronous_commit=off",
      "-c",
      "full_page_writes=off",
      "-c",
      "max_connections=200",
      "-c",
      "shared_buffers=32MB",
  };
  for (const std::string& setting : options_.settings) {
    args.push_back("-c");
    args.push_back(setting);
  }
  const std::string log = absl::StrCat(dir_, "/server.log");
  absl::StatusOr<pid_t> pid = Spawn(args, log, {as_other_user_, uid_, gid_});
  if (!pid.ok()) return pid.status();
  pid_ = *pid;

  const std::string ping =
      absl::StrCat(ConnInfo("postgres"), " connect_timeout=2");
  const absl::Time deadline = absl::Now() + options_.start_timeout;
  while (true) {
    if (PQping(ping.c_str()) == PQPING_OK) return absl::OkStatus();
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::InternalError(
          absl::StrCat("postgres exited while starting (", DescribeExit(status),
                       "): ", LogTail()));
    }
    if (absl::Now() >= deadline) {
      std::string tail = LogTail();
      (void)Stop();
      return absl::DeadlineExceededError(absl::StrCat(
          "postgres did not accept connections on ", host_, ":", port_,
          " within ", absl::FormatDuration(options_.start_timeout), ": ",
          tail));
    }
    absl::SleepFor(kPollInterval);
  }
}

PostgresServer::~PostgresServer() {
  (void)Stop();
  if (!dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
}

std::string PostgresServer::ConnInfo(absl::string_view database) const {
  return absl::StrCat("host=", host_, " port=", port_, " dbname=", database,
                      " user=postgres");
}

std::string PostgresServer::LogTail() const {
  return ReadTail(absl::StrCat(dir_, "/server.log"), 10);
}

absl::StatusOr<std::string> PostgresServer::CreateDatabase(
    absl::string_view name) {
  if (!IsValidDatabaseName(name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "database name must match [a-z_][a-z0-9_]* (at most 63 bytes); was \"",
        name, "\""));
  }
  try {
    pqxx::connection connection(ConnInfo("postgres"));
    pqxx::nontransaction tx(connection);
    tx.exec0(
        absl::StrCat("CREATE DATABASE ", tx.quote_name(std::string(name))));
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("CREATE DATABASE ", name, " failed: ", e.what()));
  }
  return ConnInfo(name);
}

namespace {

// The processes whose parent is `parent`, from /proc/<pid>/stat.
std::vector<pid_t> ChildrenOf(pid_t parent) {
  std::vector<pid_t> children;
  std::error_code error;
  for (const auto& entry :
       std::filesystem::directory_iterator("/proc", error)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || !absl::ascii_isdigit(name[0])) continue;
    absl::StatusOr<std::string> stat =
        ReadFileToString((entry.path() / "stat").string());
    if (!stat.ok()) continue;  // It exited meanwhile.
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    const size_t close = stat->rfind(')');
    if (close == std::string::npos) continue;
    std::vector<std::string> fields =
        absl::StrSplit(stat->substr(close + 1), ' ', absl::SkipEmpty());
    int ppid = 0;
    int pid = 0;
    if (fields.size() > 1 && absl::SimpleAtoi(fields[1], &ppid) &&
        ppid == parent && absl::SimpleAtoi(name, &pid)) {
      children.push_back(pid);
    }
  }
  return children;
}

}  // namespace

absl::Status PostgresServer::Freeze() {
  if (pid_ <= 0) {
    return absl::FailedPreconditionError("the server is not running");
  }
  if (frozen_) return absl::OkStatus();
  // The postmaster first, so that it forks no new backend meanwhile.
  if (::kill(pid_, SIGSTOP) != 0) {
    return errno == EPERM ? absl::PermissionDeniedError(
                                ErrnoMessage("signalling the postmaster"))
                          : absl::InternalError(ErrnoMessage("kill(SIGSTOP)"));
  }
  frozen_ = true;
  for (pid_t child : ChildrenOf(pid_)) ::kill(child, SIGSTOP);
  return absl::OkStatus();
}

absl::Status PostgresServer::Thaw() {
  if (!frozen_) return absl::OkStatus();
  frozen_ = false;
  if (pid_ <= 0) return absl::OkStatus();
  for (pid_t child : ChildrenOf(pid_)) ::kill(child, SIGCONT);
  if (::kill(pid_, SIGCONT) != 0) {
    return absl::InternalError(ErrnoMessage("kill(SIGCONT)"));
  }
  return absl::OkStatus();
}

absl::Status PostgresServer::Stop() {
  if (pid_ <= 0) return absl::OkStatus();
  (void)Thaw();
  const pid_t pid = pid_;
  pid_ = -1;
  ::kill(pid, SIGINT);  // Fast shutdown: disconnect clients, checkpoint.
  absl::StatusOr<int> exit =
      WaitForExit(pid, absl::Now() + options_.stop_timeout);
  if (exit.ok()) return absl::OkStatus();
  ::kill(pid, SIGQUIT);  // Immediate shutdown.
  exit = WaitForExit(pid, absl::Now() + absl::Seconds(5));
  if (exit.ok()) return absl::OkStatus();
  ::kill(pid, SIGKILL);
  (void)WaitForExit(pid, absl::InfiniteFuture());
  return absl::DeadlineExceededError(
      "postgres did not shut down in time and was killed");
}

absl::Status PostgresServer::Resume() {
  if (pid_ > 0) return absl::OkStatus();
  // A restarted server may briefly find its port in TIME_WAIT use by a
  // client; postgres sets SO_REUSEADDR, so binding again works at once.
  return Launch();
}

absl::Status PostgresServer::Restart() {
  absl::Status stopped = Stop();
  if (!stopped.ok()) return stopped;
  return Resume();
}

// ---------------------------------------------------------------------------
// PostgresTest

namespace {

absl::Mutex shared_mu(absl::kConstInit);  // Guards the shared server.
std::unique_ptr<PostgresServer>* shared_server ABSL_GUARDED_BY(shared_mu) =
    nullptr;
absl::Status* shared_error ABSL_GUARDED_BY(shared_mu) = nullptr;
std::atomic<int> database_counter{0};

// Stops the shared server after the binary's last test.
class SharedServerEnvironment : public ::testing::Environment {
 public:
  explicit SharedServerEnvironment(std::unique_ptr<PostgresServer>* server)
      : server_(server) {}
  void TearDown() override {
    absl::MutexLock lock(&shared_mu);
    server_->reset();
  }

 private:
  std::unique_ptr<PostgresServer>* server_;
};

}  // namespace

absl::StatusOr<PostgresServer*> PostgresTest::SharedServer() {
  absl::MutexLock lock(&shared_mu);
  if (shared_error != nullptr) return *shared_error;
  if (shared_server == nullptr) {
    shared_server = new std::unique_ptr<PostgresServer>();
    ::testing::AddGlobalTestEnvironment(
        new SharedServerEnvironment(shared_server));
  }
  // Started on first use, and again after the environment's TearDown (with
  // --gtest_repeat and --gtest_recreate_environments_when_repeating).
  if (*shared_server == nullptr) {
    absl::StatusOr<std::unique_ptr<PostgresServer>> started =
        PostgresServer::Start();
    if (!started.ok()) {
      // Every later test fails at once with the same reason.
      shared_error = new absl::Status(started.status());
      return *shared_error;
    }
    *shared_server = *std::move(started);
  }
  return shared_server->get();
}

void PostgresTest::SetUp() {
  absl::StatusOr<PostgresServer*> server = SharedServer();
  ASSERT_TRUE(server.ok()) << "cannot start PostgreSQL: " << server.status();
  server_ = *server;
  std::string name = "t";
  const ::testing::TestInfo* info =
      ::testing::UnitTest::GetInstance()->current_test_info();
  if (info != nullptr) {
    for (char c : std::string(info->name())) {
      if (name.size() >= 48) break;
      name.push_back(absl::ascii_isalnum(c) ? absl::ascii_tolower(c) : '_');
    }
  }
  absl::StrAppend(&name, "_", database_counter.fetch_add(1));
  absl::StatusOr<std::string> conninfo = server_->CreateDatabase(name);
  ASSERT_TRUE(conninfo.ok()) << conninfo.status();
  database_ = name;
  conninfo_ = *conninfo;
}

}  // namespace hangar::testing
