// Loopback ports for tests.
#ifndef HANGAR_COMMON_TESTING_PORTS_H_
#define HANGAR_COMMON_TESTING_PORTS_H_

#include "absl/status/statusor.h"

namespace hangar::testing {

// A TCP port on 127.0.0.1 that was free a moment ago: the kernel picks it for
// a socket bound to port 0, which is then closed. Nothing listens on it, so it
// also serves as "a server that is not there".
absl::StatusOr<int> PickFreeLoopbackPort();

}  // namespace hangar::testing

#endif  // HANGAR_COMMON_TESTING_PORTS_H_
