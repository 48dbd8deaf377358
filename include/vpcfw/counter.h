/* counter.h: a statistic written by one thread (a worker) and read by others
 * (the control thread, metrics).  Plain uint64_t words shared that way are a
 * data race in C11; relaxed atomics make them defined and cost nothing on
 * x86-64 and arm64 (a plain load/store; increments are single-writer, so no
 * locked read-modify-write is needed: see counter_add). */
#ifndef VPCFW_COUNTER_H
#define VPCFW_COUNTER_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct {
	_Atomic uint64_t v;
} counter_t;

static inline uint64_t counter_get(const counter_t *c)
{
	return atomic_load_explicit(&((counter_t *)c)->v, memory_order_relaxed);
}

static inline void counter_set(counter_t *c, uint64_t v)
{
	atomic_store_explicit(&c->v, v, memory_order_relaxed);
}

/* Each counter has one writer (its worker), so a load and a store suffice:
 * no lock prefix on the packet path. */
static inline void counter_add(counter_t *c, uint64_t n)
{
	counter_set(c, counter_get(c) + n);
}

static inline void counter_inc(counter_t *c)
{
	counter_add(c, 1);
}

static inline void counter_sub(counter_t *c, uint64_t n)
{
	counter_set(c, counter_get(c) - n);
}

#endif
