// hangarctl: the Hangar command-line client. Every command, its flags and
// exit codes are in README.md and `hangarctl --help`; this file only gathers
// the command groups and dispatches (core.h).
#include <string>
#include <vector>

#include "tools/hangarctl/commands.h"
#include "tools/hangarctl/core.h"

int main(int argc, char** argv) {
  using namespace hangar::ctl;  // NOLINT: main only.
  std::vector<Command> commands;
  for (std::vector<Command> group :
       {ModelsCommands(), ConnectionsCommands(), HardwareCommands(),
        DeployCommands(), KeysCommands(), GenerateCommands(),
        ReflectionCommands()}) {
    commands.insert(commands.end(), group.begin(), group.end());
  }
  return Dispatch(commands, std::vector<std::string>(argv, argv + argc));
}
