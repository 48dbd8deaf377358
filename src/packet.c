#include "vpcfw/packet.h"
