/* The Net::SMTP::Bulk-style facade's per-handle state (api/facade.c). */
#ifndef SB_FACADE_H
#define SB_FACADE_H

struct sb_facade;
void sb_facade_free(struct sb_facade *f);

#endif
