#ifndef VPCFW_NOTIFY_H
#define VPCFW_NOTIFY_H
#endif
