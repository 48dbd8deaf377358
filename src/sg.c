#include "vpcfw/sg.h"
