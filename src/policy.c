#include "vpcfw/policy.h"
