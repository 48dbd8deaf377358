#include "vpcfw/config.h"
