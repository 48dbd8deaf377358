#include "vpcfw/conntrack.h"
