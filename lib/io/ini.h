/* INI-style configuration: "[section]" headers, "key = value" lines,
 * '#' or ';' comments, applied to C structs through a key table. Errors
 * name the file, the line, the key and the allowed values. */
#ifndef MOE_INI_H
#define MOE_INI_H

#include "base/internal.h"

typedef enum {
    INI_INT,    /* int32_t  */
    INI_BOOL,   /* bool, written 0 or 1 */
    INI_I64,    /* int64_t  */
    INI_U64,    /* uint64_t */
    INI_FLOAT,  /* float    */
    INI_DOUBLE, /* double   */
    INI_CHOICE, /* int: index into choices */
    INI_STRING  /* char[cap] */
} ini_type;

/* One settable key: "section.name", where it lives, and what it accepts. */
typedef struct {
    const char *key;        /* "model.d_model"                              */
    ini_type type;
    size_t offset;          /* into the target struct                       */
    double lo, hi;          /* numeric range (inclusive)                    */
    const char *const *choices; /* INI_CHOICE: NULL-terminated names; the
                                   field is an int holding the index        */
    size_t cap;             /* INI_STRING: size of the char array           */
    const char *help;       /* one line for --help and the README           */
} ini_key;

/* Sets one key from text; `where` names the source for messages
 * ("cfg.ini:12" or "--set"). MOE_EINVAL on an unknown key (the message
 * lists the keys of its section) or a bad value (with the allowed range). */
moe_status ini_set(const ini_key *keys, size_t n_keys, void *target,
                   const char *key, const char *value, const char *where);
/* Applies every "key = value" of an INI file (a leading UTF-8 byte order
 * mark is skipped). MOE_EIO if unreadable; MOE_EINVAL naming the file and
 * line on a key or section given twice, a NUL byte, a line longer than
 * 1022 characters, or a file without any key ("FILE: no settings"). */
moe_status ini_load(const ini_key *keys, size_t n_keys, void *target,
                    const char *path);
/* Whether s is a decimal integer (an optional sign, then digits; no
 * spaces, hex, exponent or fraction) within lo..hi (|lo|, |hi| <= 9.2e18):
 * 1 with the value in *out, else 0. The integer keys use the same rule. */
int ini_parse_int(const char *s, double lo, double hi, int64_t *out);
/* Applies "section.key=value". */
moe_status ini_set_arg(const ini_key *keys, size_t n_keys, void *target,
                       const char *arg);
/* Writes every key with its value as an INI text (sections in table
 * order) into buf; returns the length, or -1 if cap is too small. */
int ini_dump(const ini_key *keys, size_t n_keys, const void *target,
             char *buf, size_t cap);

/* The value of "section.key" in an INI text (e.g. a run file's config
 * attribute) into out, comments and blanks stripped: 1 if found. */
int ini_text_get(const char *text, const char *key, char *out, size_t cap);

#endif
