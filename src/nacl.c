#include "vpcfw/nacl.h"
