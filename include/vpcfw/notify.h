/* systemd's readiness protocol (sd_notify) without libsystemd: one datagram
 * to $NOTIFY_SOCKET.  Every call does nothing when the variable is unset. */
#ifndef VPCFW_NOTIFY_H
#define VPCFW_NOTIFY_H

#include <stdbool.h>

/* True when started by systemd with Type=notify. */
bool notify_enabled(void);
/* Sends `state` as is ("READY=1\nSTATUS=..."); 0, or -1 with errno. */
int notify_send(const char *state);
int notify_ready(const char *status);
/* RELOADING=1 with MONOTONIC_USEC, as Type=notify-reload wants. */
int notify_reloading(void);
int notify_stopping(void);
int notify_status(const char *status);

#endif
