/*
 * Runs a fuzz target without libFuzzer: every file of a seed corpus, then a fixed
 * number of deterministic mutations of them. ctest runs this on every build, so the
 * targets and their invariants are exercised even where libFuzzer is not available.
 * usage: run_corpus DIR ITERATIONS
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_SEEDS 256
#define MAX_LEN 8192

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

int main(int argc, char **argv)
{
	static uint8_t seeds[MAX_SEEDS][MAX_LEN];
	static size_t lens[MAX_SEEDS];
	static uint8_t buf[MAX_LEN * 2];
	int n = 0;
	if (argc != 3) {
		fprintf(stderr, "usage: run_corpus DIR ITERATIONS\n");
		return 2;
	}
	DIR *d = opendir(argv[1]);
	if (!d) {
		perror(argv[1]);
		return 2;
	}
	struct dirent *e;
	while ((e = readdir(d)) && n < MAX_SEEDS) {
		char path[4096];
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", argv[1], e->d_name);
		FILE *f = fopen(path, "rb");
		if (!f)
			continue;
		lens[n] = fread(seeds[n], 1, MAX_LEN, f);
		fclose(f);
		LLVMFuzzerTestOneInput(seeds[n], lens[n]);
		n++;
	}
	closedir(d);
	if (n == 0) {
		fprintf(stderr, "no seeds in %s\n", argv[1]);
		return 2;
	}
	long iters = atol(argv[2]);
	for (long i = 0; i < iters; i++) {
		int s = (int)(next_rand() % (uint64_t)n);
		size_t len = lens[s];
		memcpy(buf, seeds[s], len);
		int muts = 1 + (int)(next_rand() % 8);
		for (int m = 0; m < muts; m++) {
			size_t pos = len ? next_rand() % len : 0;
			switch (next_rand() % 4) {
			case 0: if (len) buf[pos] = (uint8_t)next_rand(); break;
			case 1: if (len) buf[pos] = "\r\n.- 0259"[next_rand() % 9]; break;
			case 2: if (len < sizeof(buf) - 1) { memmove(buf + pos + 1, buf + pos, len - pos); buf[pos] = (uint8_t)next_rand(); len++; } break;
			case 3: if (len) { memmove(buf + pos, buf + pos + 1, len - pos - 1); len--; } break;
			}
		}
		LLVMFuzzerTestOneInput(buf, len);
	}
	printf("%d seeds, %ld mutations: ok\n", n, iters);
	return 0;
}
