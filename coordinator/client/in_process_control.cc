#include "coordinator/client/in_process_control.h"
