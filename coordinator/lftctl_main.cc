// lftctl: submit, watch, list, get and cancel lft jobs. `lftctl --help`.
#include <unistd.h>

#include <iostream>
#include <string>
#include <vector>

#include "coordinator/lftctl.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return lft::LftctlMain(args, std::cout, std::cerr,
                         isatty(STDOUT_FILENO) == 1);
}
