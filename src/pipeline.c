#include "vpcfw/pipeline.h"
