#include "vpcfw/replay.h"
