// The command groups of hangarctl, one file each, gathered by main.cc.
#ifndef HANGAR_TOOLS_HANGARCTL_COMMANDS_H_
#define HANGAR_TOOLS_HANGARCTL_COMMANDS_H_

#include <vector>

#include "tools/hangarctl/core.h"

namespace hangar::ctl {

// models list|get|import|prepare (catalog_commands.cc).
std::vector<Command> ModelsCommands();
// connections create|list|delete (catalog_commands.cc).
std::vector<Command> ConnectionsCommands();
// hardware list (hardware_commands.cc).
std::vector<Command> HardwareCommands();
// deploy ... and endpoint (deploy_commands.cc).
std::vector<Command> DeployCommands();
// keys create|list|revoke and usage (keys_commands.cc).
std::vector<Command> KeysCommands();
// generate (generate_command.cc).
std::vector<Command> GenerateCommands();
// list|describe|call|health through reflection (reflection_commands.cc).
std::vector<Command> ReflectionCommands();

}  // namespace hangar::ctl

#endif  // HANGAR_TOOLS_HANGARCTL_COMMANDS_H_
