/* INI configuration (see ini.h). */
#include "io/ini.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const ini_key *find(const ini_key *keys, size_t n, const char *key) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(keys[i].key, key)) return &keys[i];
    return NULL;
}

/* "unknown key" with the keys of the same section listed. */
static moe_status unknown(const ini_key *keys, size_t n, const char *key,
                          const char *where) {
    char allowed[1024] = "";
    const char *dot = strchr(key, '.');
    size_t sec = dot ? (size_t)(dot - key) : 0;
    for (size_t i = 0; i < n; i++) {
        if (sec && strncmp(keys[i].key, key, sec + 1) != 0) continue;
        if (allowed[0]) strncat(allowed, ", ", sizeof allowed - strlen(allowed) - 1);
        strncat(allowed, keys[i].key + (sec ? sec + 1 : 0), sizeof allowed - strlen(allowed) - 1);
    }
    if (!allowed[0]) { /* unknown section: list the sections */
        for (size_t i = 0; i < n; i++) {
            const char *d = strchr(keys[i].key, '.');
            size_t l = d ? (size_t)(d - keys[i].key) : strlen(keys[i].key);
            char s[64];
            snprintf(s, sizeof s, "[%.*s]", (int)l, keys[i].key);
            if (!strstr(allowed, s)) {
                if (allowed[0]) strncat(allowed, " ", sizeof allowed - strlen(allowed) - 1);
                strncat(allowed, s, sizeof allowed - strlen(allowed) - 1);
            }
        }
        return moe_fail(MOE_EINVAL, "%s: unknown section of key '%s' (allowed: %s)", where,
                        key, allowed);
    }
    return moe_fail(MOE_EINVAL, "%s: unknown key '%s' (allowed in [%.*s]: %s)", where, key,
                    (int)sec, key, allowed);
}

/* Whether s is a decimal integer (an optional sign, then digits only) in
 * lo..hi: its sign and magnitude into *neg, *mag. Compared in long double,
 * exact for every 64-bit magnitude. */
static int parse_decimal(const char *s, double lo, double hi, int *neg, uint64_t *mag) {
    *neg = *s == '-';
    if (*s == '-' || *s == '+') s++;
    if (!isdigit((unsigned char)*s)) return 0;
    uint64_t m = 0;
    for (; isdigit((unsigned char)*s); s++) {
        const unsigned d = (unsigned)(*s - '0');
        if (m > (UINT64_MAX - d) / 10) return 0; /* overflow */
        m = m * 10 + d;
    }
    if (*s) return 0;
    const long double v = *neg ? -(long double)m : (long double)m;
    if (v < (long double)lo || v > (long double)hi) return 0;
    *mag = m;
    return 1;
}

int ini_parse_int(const char *s, double lo, double hi, int64_t *out) {
    MOE_ASSERT(lo >= -9.2e18 && hi <= 9.2e18);
    int neg;
    uint64_t mag;
    if (!parse_decimal(s, lo, hi, &neg, &mag)) return 0;
    *out = neg ? -(int64_t)mag : (int64_t)mag;
    return 1;
}

moe_status ini_set(const ini_key *keys, size_t n_keys, void *target,
                   const char *key, const char *value, const char *where) {
    const ini_key *k = find(keys, n_keys, key);
    if (!k) return unknown(keys, n_keys, key, where);
    char *field = (char *)target + k->offset, *end = NULL;
    errno = 0;
    switch (k->type) {
    case INI_INT:
    case INI_BOOL:
    case INI_I64:
    case INI_U64: {
        int neg;
        uint64_t mag;
        if (!parse_decimal(value, k->lo, k->hi, &neg, &mag))
            return moe_fail(MOE_EINVAL, "%s: %s = '%s': allowed integers %.17g..%.17g", where,
                            key, value, k->lo, k->hi);
        const int64_t v = neg ? -(int64_t)mag : (int64_t)mag; /* |v| <= 2^63 - 1 below */
        if (k->type == INI_INT) *(int32_t *)field = (int32_t)v;
        else if (k->type == INI_BOOL) *(bool *)field = mag != 0;
        else if (k->type == INI_I64) *(int64_t *)field = v;
        else *(uint64_t *)field = mag; /* lo >= 0: never negative */
        return MOE_OK;
    }
    case INI_FLOAT:
    case INI_DOUBLE: {
        double v = strtod(value, &end); /* decimal only: no hex floats */
        if (end == value || *end || errno || strpbrk(value, "xX") || !isfinite(v) ||
            v < k->lo || v > k->hi)
            return moe_fail(MOE_EINVAL, "%s: %s = '%s': allowed numbers %g..%g", where, key,
                            value, k->lo, k->hi);
        if (k->type == INI_FLOAT) *(float *)field = (float)v;
        else *(double *)field = v;
        return MOE_OK;
    }
    case INI_CHOICE: {
        char allowed[256] = "";
        for (int i = 0; k->choices[i]; i++) {
            if (!strcmp(value, k->choices[i])) {
                *(int *)field = i;
                return MOE_OK;
            }
            if (i) strncat(allowed, "|", sizeof allowed - strlen(allowed) - 1);
            strncat(allowed, k->choices[i], sizeof allowed - strlen(allowed) - 1);
        }
        return moe_fail(MOE_EINVAL, "%s: %s = '%s': allowed %s", where, key, value, allowed);
    }
    case INI_STRING:
        if (strlen(value) >= k->cap)
            return moe_fail(MOE_EINVAL, "%s: %s: at most %zu characters", where, key, k->cap - 1);
        snprintf(field, k->cap, "%s", value);
        return MOE_OK;
    }
    return MOE_EINVAL;
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
    return s;
}

/* Reads one line of f (without its '\n') into line[cap]: 0 at the end of
 * the file, 1 a line, -1 longer than cap - 2 characters, -2 a NUL byte. */
static int read_line(FILE *f, char *line, size_t cap) {
    size_t n = 0;
    int c = EOF, r = 1;
    while ((c = getc(f)) != EOF && c != '\n') {
        if (c == '\0') r = -2;
        else if (n + 2 >= cap) r = r == 1 ? -1 : r;
        else line[n++] = (char)c;
    }
    line[n] = '\0';
    return c == EOF && n == 0 && r == 1 ? 0 : r;
}

/* A line's text: comment stripped, trimmed. */
static char *content(char *line) {
    char *c = strpbrk(line, "#;");
    if (c) *c = '\0';
    return trim(line);
}

/* [section] header s at line ln: its name into section, checked against
 * the names seen[n] (the lines first seen in seen_ln). */
#define MAX_SECTIONS 32
static moe_status section_header(const char *s, const char *path, int ln, char *section,
                                 char (*seen)[64], int *seen_ln, int *n) {
    const char *e = strchr(s, ']');
    if (!e || e[1] || e - s - 1 <= 0 || e - s - 1 >= 64)
        return moe_fail(MOE_EINVAL, "%s:%d: bad section header '%s' (expected [name])", path, ln, s);
    snprintf(section, 64, "%.*s", (int)(e - s - 1), s + 1);
    for (int i = 0; i < *n; i++)
        if (!strcmp(seen[i], section))
            return moe_fail(MOE_EINVAL, "%s:%d: duplicate section [%s] (first on line %d)", path,
                            ln, section, seen_ln[i]);
    if (*n == MAX_SECTIONS)
        return moe_fail(MOE_EINVAL, "%s:%d: more than %d sections", path, ln, MAX_SECTIONS);
    snprintf(seen[*n], 64, "%s", section);
    seen_ln[(*n)++] = ln;
    return MOE_OK;
}

moe_status ini_load(const ini_key *keys, size_t n_keys, void *target,
                    const char *path) {
    int *key_ln = calloc(n_keys ? n_keys : 1, sizeof *key_ln); /* line each key was set on */
    if (!key_ln) return moe_fail(MOE_ENOMEM, "%s: out of memory", path);
    FILE *f = fopen(path, "r");
    if (!f) {
        free(key_ln);
        return moe_fail(MOE_EIO, "%s: %s", path, strerror(errno));
    }
    char line[1024], section[64] = "", where[512], sections[MAX_SECTIONS][64];
    int sec_ln[MAX_SECTIONS], n_sec = 0, n_set = 0, r;
    moe_status st = MOE_OK;
    for (int ln = 1; st == MOE_OK && (r = read_line(f, line, sizeof line)) != 0; ln++) {
        snprintf(where, sizeof where, "%s:%d", path, ln);
        if (r == -2) {
            st = moe_fail(MOE_EINVAL, "%s: NUL byte", where);
            break;
        }
        if (r == -1) {
            st = moe_fail(MOE_EINVAL, "%s: line longer than %zu characters", where, sizeof line - 2);
            break;
        }
        /* a UTF-8 byte order mark, as some editors write, opens the file */
        char *s = content(ln == 1 && !strncmp(line, "\xEF\xBB\xBF", 3) ? line + 3 : line);
        if (!*s) continue;
        if (*s == '[') {
            st = section_header(s, path, ln, section, sections, sec_ln, &n_sec);
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq) {
            st = moe_fail(MOE_EINVAL, "%s: expected 'key = value', got '%s'", where, s);
            break;
        }
        *eq = '\0';
        char *k = trim(s), *v = trim(eq + 1), full[160];
        if (!section[0]) {
            st = moe_fail(MOE_EINVAL, "%s: key '%s' before any [section]", where, k);
            break;
        }
        snprintf(full, sizeof full, "%s.%s", section, k);
        const ini_key *key = find(keys, n_keys, full);
        if (key && key_ln[key - keys]) {
            st = moe_fail(MOE_EINVAL, "%s: duplicate key '%s' (first set on line %d)", where,
                          full, key_ln[key - keys]);
            break;
        }
        st = ini_set(keys, n_keys, target, full, v, where);
        if (st == MOE_OK) key_ln[key - keys] = ln, n_set++;
    }
    if (st == MOE_OK && ferror(f)) st = moe_fail(MOE_EIO, "%s: read error", path);
    if (st == MOE_OK && n_set == 0) st = moe_fail(MOE_EINVAL, "%s: no settings", path);
    fclose(f);
    free(key_ln);
    return st;
}

moe_status ini_set_arg(const ini_key *keys, size_t n_keys, void *target,
                       const char *arg) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", arg);
    char *eq = strchr(buf, '=');
    if (!eq || !strchr(buf, '.') || strchr(buf, '.') > eq)
        return moe_fail(MOE_EINVAL, "--set '%s': expected section.key=value", arg);
    *eq = '\0';
    return ini_set(keys, n_keys, target, trim(buf), trim(eq + 1), "--set");
}

int ini_dump(const ini_key *keys, size_t n_keys, const void *target,
             char *buf, size_t cap) {
    size_t at = 0;
    char section[64] = "";
    for (size_t i = 0; i < n_keys; i++) {
        const ini_key *k = &keys[i];
        const char *dot = strchr(k->key, '.');
        char sec[64];
        snprintf(sec, sizeof sec, "%.*s", (int)(dot - k->key), k->key);
        const char *field = (const char *)target + k->offset;
        char val[256];
        switch (k->type) {
        case INI_INT: snprintf(val, sizeof val, "%d", *(const int32_t *)field); break;
        case INI_BOOL: snprintf(val, sizeof val, "%d", *(const bool *)field ? 1 : 0); break;
        case INI_I64: snprintf(val, sizeof val, "%lld", (long long)*(const int64_t *)field); break;
        case INI_U64: snprintf(val, sizeof val, "%llu", (unsigned long long)*(const uint64_t *)field); break;
        case INI_FLOAT: { /* the shortest text that reads back exactly */
            const float x = *(const float *)field;
            for (int p = 6; p <= 9; p++) {
                snprintf(val, sizeof val, "%.*g", p, (double)x);
                if (strtof(val, NULL) == x) break;
            }
            break;
        }
        case INI_DOUBLE: {
            const double x = *(const double *)field;
            for (int p = 6; p <= 17; p++) {
                snprintf(val, sizeof val, "%.*g", p, x);
                if (strtod(val, NULL) == x) break;
            }
            break;
        }
        case INI_CHOICE: snprintf(val, sizeof val, "%s", k->choices[*(const int *)field]); break;
        case INI_STRING: snprintf(val, sizeof val, "%s", field); break;
        }
        int w = snprintf(buf + at, at < cap ? cap - at : 0, "%s%s%s%s = %s\n",
                         strcmp(sec, section) ? (at ? "\n[" : "[") : "",
                         strcmp(sec, section) ? sec : "",
                         strcmp(sec, section) ? "]\n" : "", dot + 1, val);
        if (w < 0 || at + (size_t)w >= cap) return -1;
        at += (size_t)w;
        snprintf(section, sizeof section, "%s", sec);
    }
    return (int)at;
}

int ini_text_get(const char *text, const char *key, char *out, size_t cap) {
    const char *dot = strchr(key, '.');
    if (!text || !dot) return 0;
    char want_sec[128], sec[128] = "", line[1024];
    snprintf(want_sec, sizeof want_sec, "%.*s", (int)(dot - key), key);
    for (const char *p = text; *p;) {
        size_t n = strcspn(p, "\n");
        snprintf(line, sizeof line, "%.*s", (int)(n < sizeof line ? n : sizeof line - 1), p);
        p += n + (p[n] == '\n');
        char *s = trim(line), *v;
        if (*s == '[') {
            char *end = strchr(s, ']');
            if (end) *end = '\0';
            snprintf(sec, sizeof sec, "%s", trim(s + 1));
        } else if (*s != '#' && *s != ';' && !strcmp(sec, want_sec) &&
                   (v = strchr(s, '=')) && (*v = '\0', !strcmp(trim(s), dot + 1))) {
            char *hash = strpbrk(v + 1, "#;");
            if (hash) *hash = '\0';
            snprintf(out, cap, "%s", trim(v + 1));
            return 1;
        }
    }
    return 0;
}
