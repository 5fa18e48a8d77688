#include "gmime_once.h"

#include <gmime/gmime.h>
#include <pthread.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;

static void start(void)
{
	g_mime_init();
}

void sb_gmime_once(void)
{
	pthread_once(&once, start);
}
