#ifndef VPCFW_NFQ_H
#define VPCFW_NFQ_H
#endif
