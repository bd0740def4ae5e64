// A private PostgreSQL 15 cluster for tests: a real server, never a mock.
//
// Start() runs `initdb` into a fresh temporary directory and launches
// `postgres` on a free TCP port of 127.0.0.1 (its unix socket lives in the
// same directory), with fsync and synchronous commit off for speed. It
// returns once the server accepts connections, waiting on that condition up
// to `start_timeout` (no fixed sleeps). Tests then create one database each:
//
//   ASSERT_OK_AND_ASSIGN(auto pg, PostgresServer::Start());
//   ASSERT_OK_AND_ASSIGN(std::string conninfo, pg->CreateDatabase("t1"));
//   // conninfo: "host=127.0.0.1 port=41237 dbname=t1 user=postgres"
//
// PostgreSQL refuses to run as root, and CI runs as root: then the
// directory is handed to `run_as_user` (default `postgres`) and initdb and
// the server run as that user. The superuser is always `postgres`,
// authenticated by trust (the server listens on loopback only).
//
// Stop() shuts the server down (fast mode) keeping its data; Resume()
// starts it again on the same port with the same data; Restart() does both
// (for reconnect tests). Freeze() stops every process of the server with
// SIGSTOP (what a hung host or a network partition looks like to clients:
// connections stay open, nothing answers) and Thaw() continues them; Stop()
// and the destructor thaw a frozen server first. The destructor stops the
// server and removes the
// directory. Should the test process die without running it, the server
// receives SIGQUIT (PR_SET_PDEATHSIG) and exits too; that signal is tied to
// the thread that started the server, so call Start(), Resume() and
// Restart() from a thread that outlives the server (a test's main thread).
//
// Not thread-safe: one thread controls a server; any number of clients may
// use it.
//
// Many tests in one binary share one cluster cheaply through PostgresTest
// (below), which starts it on first use and gives each test a new database.
#ifndef HANGAR_COMMON_TESTING_POSTGRES_SERVER_H_
#define HANGAR_COMMON_TESTING_POSTGRES_SERVER_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace hangar::testing {

struct PostgresServerOptions {
  // Directory holding initdb and postgres.
  std::string bin_dir = "/usr/lib/postgresql/15/bin";

  // Parent of the cluster's temporary directory. Empty: $TMPDIR, else /tmp.
  // When running as root it must be traversable by `run_as_user`.
  std::string base_dir;

  // The unprivileged user that runs initdb and the server when this process
  // is root. Ignored otherwise.
  std::string run_as_user = "postgres";

  // Extra server settings, each "name=value" (passed as -c name=value).
  std::vector<std::string> settings;

  // Longest wait for initdb, and then for the server to accept connections.
  absl::Duration start_timeout = absl::Seconds(60);

  // Longest wait for a fast shutdown before the server is killed.
  absl::Duration stop_timeout = absl::Seconds(30);
};

class PostgresServer {
 public:
  static absl::StatusOr<std::unique_ptr<PostgresServer>> Start(
      const PostgresServerOptions& options = {});

  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;
  ~PostgresServer();

  // Creates database `name` ([a-z_][a-z0-9_]*, at most 63 bytes) and
  // returns a libpq connection string for it.
  absl::StatusOr<std::string> CreateDatabase(absl::string_view name);

  // A libpq connection string for `database` on this server (which need not
  // exist yet).
  std::string ConnInfo(absl::string_view database = "postgres") const;

  // Fast shutdown, keeping the data. OK if already stopped.
  absl::Status Stop();
  // Starts a stopped server again on the same port with the same data.
  absl::Status Resume();
  // Stop() then Resume().
  absl::Status Restart();

  // SIGSTOP to the postmaster, then to each of its child processes
  // (backends, checkpointer, ...). PERMISSION_DENIED when this process may
  // not signal them (not root and not the server's user); FAILED_PRECONDITION
  // when the server is not running. OK if already frozen.
  absl::Status Freeze();
  // SIGCONT to the children, then the postmaster. OK if not frozen.
  absl::Status Thaw();
  bool frozen() const { return frozen_; }

  bool running() const { return pid_ > 0; }
  const std::string& host() const { return host_; }
  int port() const { return port_; }
  // The temporary directory holding data/, the socket and server.log.
  const std::string& dir() const { return dir_; }
  // The last lines of server.log, for failure messages.
  std::string LogTail() const;

 private:
  explicit PostgresServer(const PostgresServerOptions& options);

  absl::Status Init();
  // Launches postgres on port_ and waits until it accepts connections.
  absl::Status Launch();

  const PostgresServerOptions options_;
  const std::string host_ = "127.0.0.1";
  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;  // The postmaster, when running.
  bool frozen_ = false;
  bool as_other_user_ = false;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
};

// A fixture whose tests share one PostgresServer per test binary (started
// on first use, stopped after the last test) and each get a fresh database:
//
//   class StoreTest : public hangar::testing::PostgresTest {};
//   TEST_F(StoreTest, Works) {
//     ASSERT_OK_AND_ASSIGN(auto pool, db::Pool::Create({.conninfo =
//                                                        conninfo()}));
//   }
class PostgresTest : public ::testing::Test {
 public:
  // The binary's shared server, started on first call. Thread-safe.
  static absl::StatusOr<PostgresServer*> SharedServer();

 protected:
  void SetUp() override;

  PostgresServer& server() { return *server_; }
  // Connection string of this test's own database.
  const std::string& conninfo() const { return conninfo_; }
  const std::string& database() const { return database_; }

 private:
  PostgresServer* server_ = nullptr;
  std::string database_;
  std::string conninfo_;
};

}  // namespace hangar::testing

#endif  // HANGAR_COMMON_TESTING_POSTGRES_SERVER_H_
