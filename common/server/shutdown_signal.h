// SIGTERM / SIGINT as an ordinary event a server can wait for.
//
// The handler only writes one byte to a self-pipe (async-signal-safe); a
// watcher thread reads it and runs the registered callbacks, outside signal
// context, where they may lock mutexes and log. After the first signal the
// default disposition is restored, so a second Ctrl-C ends a stuck drain.
#ifndef HANGAR_COMMON_SERVER_SHUTDOWN_SIGNAL_H_
#define HANGAR_COMMON_SERVER_SHUTDOWN_SIGNAL_H_

#include <functional>

namespace hangar {

// Installs the handlers (once per process; later calls are no-ops) and adds
// `callback`, run once with the signal number when SIGTERM or SIGINT arrives.
// Returns an id for RemoveShutdownCallback.
int OnShutdownSignal(std::function<void(int signal)> callback);
void RemoveShutdownCallback(int id);

}  // namespace hangar

#endif  // HANGAR_COMMON_SERVER_SHUTDOWN_SIGNAL_H_
