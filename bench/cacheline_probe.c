/*
 * Cache-line round trip between two CPUs, for bench/e2e.sh.
 *
 * Two threads, pinned to CPU A and CPU B, pass a counter back and forth through one cache
 * line; the program prints the median nanoseconds per round trip over N intervals of 100 ms.
 * net_memif's rings and packet copies cross between the two processes' cores on every burst,
 * so its rate follows this figure: on the shared KVM guests we measured on it flips between
 * about 60-140 ns (the two vCPUs near each other on the host) and about 335 ns (far apart),
 * at moments the guest does not choose, and the memif rate of testpmd and of the appliance
 * alike halves with it. The benchmark probes before and after each memif phase and compares
 * only phases measured at the same level.
 *
 *   cacheline_probe CPU_A CPU_B [INTERVALS]     (default 5 intervals: half a second)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static _Atomic long flag __attribute__((aligned(64)));
static _Atomic int stop __attribute__((aligned(64)));
/* 1 once the partner thread is pinned, -1 if it could not be. */
static _Atomic int ready;

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

static int pin(int cpu)
{
	cpu_set_t s;
	CPU_ZERO(&s);
	CPU_SET(cpu, &s);
	return pthread_setaffinity_np(pthread_self(), sizeof(s), &s);
}

static void *pong(void *arg)
{
	long v = 1;
	if (pin(*(int *)arg) != 0) {
		atomic_store(&ready, -1);
		return NULL;
	}
	atomic_store(&ready, 1);
	while (!atomic_load(&stop)) {
		while (atomic_load_explicit(&flag, memory_order_acquire) != v)
			if (atomic_load(&stop))
				return NULL;
		atomic_store_explicit(&flag, v + 1, memory_order_release);
		v += 2;
	}
	return NULL;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s CPU_A CPU_B [INTERVALS]\n", argv[0]);
		return 2;
	}
	int a = atoi(argv[1]), b = atoi(argv[2]);
	int n = argc > 3 ? atoi(argv[3]) : 5;
	if (n < 1 || n > 100) {
		fprintf(stderr, "INTERVALS: 1 to 100\n");
		return 2;
	}
	double ns[100];
	pthread_t t;
	if (pin(a) != 0 || pthread_create(&t, NULL, pong, &b) != 0) {
		fprintf(stderr, "cannot pin threads to CPUs %d and %d\n", a, b);
		return 1;
	}
	while (atomic_load(&ready) == 0)
		sched_yield();
	if (atomic_load(&ready) < 0) {
		pthread_join(t, NULL);
		fprintf(stderr, "cannot pin a thread to CPU %d\n", b);
		return 1;
	}
	long x = 0;
	for (int i = 0; i < n; i++) {
		long trips = 0;
		double start = now(), end = start + 0.1, t1;
		while ((t1 = now()) < end) {
			for (int k = 0; k < 256; k++) {
				atomic_store_explicit(&flag, x + 1, memory_order_release);
				/* Bounded: the pinned partner answers in microseconds, even descheduled
				 * for a while; give up after about a second of spinning. */
				for (long spins = 0;
				     atomic_load_explicit(&flag, memory_order_acquire) != x + 2; spins++)
					if (spins > 1000000000L) {
						fprintf(stderr, "the partner thread stopped answering\n");
						return 1;
					}
				x += 2;
			}
			trips += 256;
		}
		ns[i] = (t1 - start) * 1e9 / trips;
	}
	atomic_store(&stop, 1);
	pthread_join(t, NULL);
	qsort(ns, n, sizeof(ns[0]), cmp);
	printf("%.0f\n", ns[n / 2]);
	return 0;
}
