/*
 * smtpbulk send --template MSG --recipients LIST.csv: mail merge, one message per CSV
 * row (libcsv). The first row names the columns; {{column}} in the template becomes the
 * row's value (smtpbulk_template_render()), and the envelope comes from the filled
 * message's headers, as with --mail. A row's position is LIST:N, N its record number
 * counting the header as 1 (a spreadsheet's row number); its id is its "id" column's
 * value when there is one, else the position. The CSV is read in chunks: memory stays
 * bounded whatever its length.
 */
#ifndef SB_SEND_MERGE_SOURCE_H
#define SB_SEND_MERGE_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "send_manifest.h"

struct merge_source;

/* Opens both files and reads the header row. Returns 0, or -1 with why (a sentence). */
int merge_source_open(const char *template_path, const char *csv_path, const char *from,
		      size_t max_size, struct merge_source **out, char *why, size_t cap);

/* As mail_source_next(): 0 a record, 1 the end, -1 a bad row (why), -2 the CSV could
 * not be read (said in why). */
int merge_source_next(struct merge_source *s, struct send_record *r, uint64_t *hash,
		      char *pos, size_t pos_cap, char *why, size_t why_cap);

void merge_source_close(struct merge_source *s);

#endif
