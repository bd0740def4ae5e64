// Which job states are final. A job of the scheduler's job API (and an
// optimizer job, which mirrors one) moves PENDING -> RUNNING and ends in
// exactly one of SUCCEEDED, FAILED or CANCELLED; nothing follows an end.
// Watchers stop, callers stop waiting and retries start from these states,
// so the answer lives once here.
#ifndef HANGAR_COMMON_API_JOB_STATE_H_
#define HANGAR_COMMON_API_JOB_STATE_H_

#include "hangar/v1/common.pb.h"

namespace hangar {

inline bool IsTerminalJobState(hangar::v1::JobState state) {
  return state == hangar::v1::JOB_STATE_SUCCEEDED ||
         state == hangar::v1::JOB_STATE_FAILED ||
         state == hangar::v1::JOB_STATE_CANCELLED;
}

}  // namespace hangar

#endif  // HANGAR_COMMON_API_JOB_STATE_H_
