/* config.c — config.yaml: a deliberately small YAML reader for the flat
 * option files mitmproxy writes.  One pass over lines; each top-level key
 * is handed to the caller with its scalar or list.  Whatever YAML feature
 * it does not know is an error that names the line. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct strlist {
    char **v;
    size_t n;
} strlist;

static void strlist_free(strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static int strlist_push(strlist *l, char *s)
{
    char **nv = s ? realloc(l->v, (l->n + 1) * sizeof *nv) : NULL;
    if (!nv) {
        free(s);
        return -1;
    }
    l->v = nv;
    l->v[l->n++] = s;
    return 0;
}

static void append_utf8(char **o, unsigned long cp)
{
    char *p = *o;
    if (cp < 0x80) {
        *p++ = (char)cp;
    } else if (cp < 0x800) {
        *p++ = (char)(0xc0 | (cp >> 6));
        *p++ = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        *p++ = (char)(0xe0 | (cp >> 12));
        *p++ = (char)(0x80 | ((cp >> 6) & 0x3f));
        *p++ = (char)(0x80 | (cp & 0x3f));
    } else {
        *p++ = (char)(0xf0 | (cp >> 18));
        *p++ = (char)(0x80 | ((cp >> 12) & 0x3f));
        *p++ = (char)(0x80 | ((cp >> 6) & 0x3f));
        *p++ = (char)(0x80 | (cp & 0x3f));
    }
    *o = p;
}

/* A quoted scalar starting at *pp (on the quote).  On success *pp is past
 * the closing quote and the unquoted text is returned. */
static char *quoted(const char **pp, char *why, size_t whysz)
{
    const char *p = *pp;
    char q = *p++;
    char *out = malloc(strlen(p) * 4 + 1), *o = out;
    if (!out) {
        snprintf(why, whysz, "out of memory");
        return NULL;
    }
    for (;;) {
        if (!*p) {
            snprintf(why, whysz, "unterminated %s-quoted string", q == '"' ? "double" : "single");
            free(out);
            return NULL;
        }
        if (q == '\'' && *p == '\'') {
            if (p[1] == '\'') {
                *o++ = '\'';
                p += 2;
                continue;
            }
            p++;
            break;
        }
        if (q == '"' && *p == '"') {
            p++;
            break;
        }
        if (q == '"' && *p == '\\') {
            char e = p[1];
            static const char from[] = "0abtnvfre \"/\\N_LP";
            static const char to[] = "\0\a\b\t\n\v\f\r\x1b \"/\\";
            const char *f = e ? strchr(from, e) : NULL;
            if (f && (size_t)(f - from) < sizeof to - 1) {
                *o++ = to[f - from];
                p += 2;
                continue;
            }
            int digits = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
            if (digits) {
                unsigned long cp = 0;
                for (int i = 0; i < digits; i++) {
                    char c = p[2 + i];
                    if (!isxdigit((unsigned char)c)) {
                        snprintf(why, whysz, "invalid \\%c escape in double-quoted string", e);
                        free(out);
                        return NULL;
                    }
                    cp = cp * 16 + (unsigned long)(isdigit((unsigned char)c) ? c - '0' : tolower(c) - 'a' + 10);
                }
                if (cp > 0x10ffff) {
                    snprintf(why, whysz, "invalid code point in double-quoted string");
                    free(out);
                    return NULL;
                }
                append_utf8(&o, cp);
                p += 2 + digits;
                continue;
            }
            snprintf(why, whysz, "unknown escape \\%c in double-quoted string", e ? e : ' ');
            free(out);
            return NULL;
        }
        *o++ = *p++;
    }
    *o = '\0';
    *pp = p;
    return out;
}

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* Only whitespace or a comment may follow a value. */
static bool rest_is_empty(const char *p)
{
    p = skip_ws(p);
    return !*p || *p == '#';
}

/* A plain (unquoted) scalar: up to a comment (" #") or the end, trimmed.
 * `stop` lists extra terminators (",]" inside a flow list). */
static char *plain(const char **pp, const char *stop, char *why, size_t whysz)
{
    const char *p = *pp, *start = p;
    if (strchr("|>", *p)) {
        snprintf(why, whysz, "block scalars (%c) are not supported: quote the value", *p);
        return NULL;
    }
    if (strchr("&*!%@`{", *p)) {
        snprintf(why, whysz, "'%c' cannot start a plain value: quote the value", *p);
        return NULL;
    }
    while (*p && !strchr(stop, *p) && !(*p == '#' && p > start && (p[-1] == ' ' || p[-1] == '\t')))
        p++;
    const char *end = p;
    while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    *pp = p;
    return strndup(start, (size_t)(end - start));
}

static bool is_null(const char *s)
{
    return !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

/* "[a, 'b', c]" */
static int flow_list(const char *p, strlist *out, char *why, size_t whysz)
{
    p = skip_ws(p + 1);
    if (*p == ']')
        return rest_is_empty(p + 1) ? 0 : (snprintf(why, whysz, "unexpected text after ]"), -1);
    for (;;) {
        p = skip_ws(p);
        char *item = (*p == '"' || *p == '\'') ? quoted(&p, why, whysz) : plain(&p, ",]", why, whysz);
        if (!item)
            return -1;
        if (strlist_push(out, item) < 0) {
            snprintf(why, whysz, "out of memory");
            return -1;
        }
        p = skip_ws(p);
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p == ']') {
            if (!rest_is_empty(p + 1)) {
                snprintf(why, whysz, "unexpected text after ]");
                return -1;
            }
            return 0;
        }
        snprintf(why, whysz, *p ? "expected ',' or ']' in list" : "unterminated list (lists must fit on one line)");
        return -1;
    }
}

/* One scalar value after "key:" or "- ". */
static char *scalar(const char *p, char *why, size_t whysz)
{
    char *v;
    if (*p == '"' || *p == '\'') {
        if (!(v = quoted(&p, why, whysz)))
            return NULL;
        if (!rest_is_empty(p)) {
            snprintf(why, whysz, "unexpected text after the closing quote");
            free(v);
            return NULL;
        }
        return v;
    }
    return plain(&p, "", why, whysz);
}

typedef struct pending {
    char *key;
    strlist items;
    bool is_list;      /* "- " lines seen, or [..] */
    bool null_value;   /* "key:" with nothing yet */
    int line;
} pending;

static int flush(pending *pd, const char *name, config_cb cb, void *ud, char *err, size_t errsz)
{
    if (!pd->key)
        return 0;
    char why[400];
    why[0] = '\0';
    int rc = cb(ud, pd->key, pd->items.v, pd->items.n, pd->is_list, why, sizeof why);
    if (rc < 0)
        snprintf(err, errsz, "%s:%d: %s", name, pd->line, why);
    free(pd->key);
    strlist_free(&pd->items);
    memset(pd, 0, sizeof *pd);
    return rc;
}

int config_parse(const char *text, const char *name, config_cb cb, void *ud, char *err, size_t errsz)
{
    pending pd = {0};
    strlist keys = {0};
    char why[400];
    int lineno = 0, rc = -1;
    const char *p = text;
    while (*p) {
        lineno++;
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        char *line = strndup(p, len);
        p += len + (eol ? 1 : 0);
        if (!line) {
            snprintf(err, errsz, "%s: out of memory", name);
            goto out;
        }
        if (len && line[len - 1] == '\r')
            line[--len] = '\0';
        const char *s = skip_ws(line);
        why[0] = '\0';
        if (!*s || *s == '#' || (lineno == 1 && !strncmp(line, "---", 3) && rest_is_empty(line + 3))) {
            free(line);
            continue;
        }
        if (*s == '-' && (s[1] == ' ' || s[1] == '\0' || s[1] == '\t')) {
            /* a list item of the key above */
            if (!pd.key || (!pd.is_list && !pd.null_value)) {
                snprintf(why, sizeof why, "list item without a key above it");
                goto bad;
            }
            pd.is_list = true;
            pd.null_value = false;
            char *item = scalar(skip_ws(s + 1), why, sizeof why);
            if (!item)
                goto bad;
            if (strlist_push(&pd.items, item) < 0) {
                snprintf(why, sizeof why, "out of memory");
                goto bad;
            }
            free(line);
            continue;
        }
        if (s != line) {
            snprintf(why, sizeof why, "unexpected indentation (options are top-level keys)");
            goto bad;
        }
        if (flush(&pd, name, cb, ud, err, errsz) < 0) {
            free(line);
            goto out;
        }
        const char *colon = line;
        while (*colon && *colon != ':' && *colon != ' ' && *colon != '#')
            colon++;
        if (*colon != ':' || colon == line || (colon[1] && colon[1] != ' ' && colon[1] != '\t')) {
            snprintf(why, sizeof why, "expected 'option: value'");
            goto bad;
        }
        pd.key = strndup(line, (size_t)(colon - line));
        pd.line = lineno;
        if (!pd.key) {
            snprintf(why, sizeof why, "out of memory");
            goto bad;
        }
        for (size_t i = 0; i < keys.n; i++)
            if (!strcmp(keys.v[i], pd.key)) {
                snprintf(why, sizeof why, "duplicate key '%s'", pd.key);
                goto bad;
            }
        if (strlist_push(&keys, strdup(pd.key)) < 0) {
            snprintf(why, sizeof why, "out of memory");
            goto bad;
        }
        const char *v = skip_ws(colon + 1);
        if (!*v || *v == '#') {
            pd.null_value = true;   /* a list may follow */
        } else if (*v == '[') {
            pd.is_list = true;
            if (flow_list(v, &pd.items, why, sizeof why) < 0)
                goto bad;
        } else {
            char *sv = scalar(v, why, sizeof why);
            if (!sv)
                goto bad;
            if (is_null(sv)) {
                free(sv);
                pd.null_value = true;
            } else if (strlist_push(&pd.items, sv) < 0) {
                snprintf(why, sizeof why, "out of memory");
                goto bad;
            }
        }
        free(line);
        continue;
    bad:
        free(line);
        snprintf(err, errsz, "%s:%d: %s", name, lineno, why);
        goto out;
    }
    rc = flush(&pd, name, cb, ud, err, errsz);
out:
    free(pd.key);
    strlist_free(&pd.items);
    strlist_free(&keys);
    return rc;
}

int config_load(const char *path, const char *name, config_cb cb, void *ud, char *err, size_t errsz)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errsz, "%s: cannot read: %s", name, strerror(errno));
        return -1;
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len - 1, fp)) > 0) {
        len += n;
        if (cap - len <= 1) {
            char *nb = cap > (16u << 20) ? NULL : realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(fp);
    if (!buf) {
        snprintf(err, errsz, "%s: cannot read: out of memory or too large", name);
        return -1;
    }
    buf[len] = '\0';
    if (memchr(buf, '\0', len)) {
        snprintf(err, errsz, "%s: not a text file", name);
        free(buf);
        return -1;
    }
    int rc = config_parse(buf, name, cb, ud, err, errsz);
    free(buf);
    return rc;
}
