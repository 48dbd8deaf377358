/* systemd's readiness protocol (sd_notify) without libsystemd: one datagram
 * to $NOTIFY_SOCKET.  Every call does nothing when the variable is unset. */
#ifndef VPCFW_NOTIFY_H
#define VPCFW_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>

/* True when started by systemd with Type=notify. */
bool notify_enabled(void);
/* Sends `state` as is ("READY=1\nSTATUS=..."); 0, or -1 with errno. */
int notify_send(const char *state);
int notify_ready(const char *status);
/* RELOADING=1 with MONOTONIC_USEC, as Type=notify-reload wants. */
int notify_reloading(void);
int notify_stopping(void);
int notify_status(const char *status);
/* The watchdog period systemd asks for (WatchdogSec=, passed as
 * $WATCHDOG_USEC; $WATCHDOG_PID, when set, must be this process), in
 * microseconds; 0: no watchdog. */
uint64_t notify_watchdog_usec(void);
/* WATCHDOG=1: the service is alive. */
int notify_watchdog(void);

#endif
