/* config.c — config.yaml through libyaml: all of YAML's syntax (comments,
 * quoted, folded and literal strings, flow and block lists, anchors and
 * aliases); what the options need of it is a flat mapping of names to a
 * scalar, null or a list of scalars.  Anything else is an error that names
 * the line and column. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <yaml.h>

/* A value under a key, or an anchored one kept for its aliases. */
typedef struct cval {
    char **v;
    size_t n;
    bool is_list, is_null;
} cval;

typedef struct anchor {
    char *name;
    cval val;
} anchor;

typedef struct cparse {
    yaml_parser_t p;
    const char *name;
    char *err;
    size_t errsz;
    anchor *anchors;
    size_t nanchors;
    char **keys;        /* keys seen, for duplicates */
    size_t nkeys;
} cparse;

static void cval_free(cval *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->v[i]);
    free(c->v);
    memset(c, 0, sizeof *c);
}

static int cval_push(cval *c, const char *s, size_t n)
{
    char **nv = realloc(c->v, (c->n + 1) * sizeof *nv);
    if (!nv)
        return -1;
    c->v = nv;
    if (!(c->v[c->n] = strndup(s, n)))
        return -1;
    c->n++;
    return 0;
}

static int cval_copy(cval *dst, const cval *src)
{
    memset(dst, 0, sizeof *dst);
    dst->is_list = src->is_list;
    dst->is_null = src->is_null;
    for (size_t i = 0; i < src->n; i++)
        if (cval_push(dst, src->v[i], strlen(src->v[i])) < 0)
            return -1;
    return 0;
}

static int fail_at(cparse *c, yaml_mark_t m, const char *fmt, const char *arg)
{
    char why[384];
    snprintf(why, sizeof why, fmt, arg);
    snprintf(c->err, c->errsz, "%s:%zu:%zu: %s", c->name, m.line + 1, m.column + 1, why);
    return -1;
}

static int next_event(cparse *c, yaml_event_t *ev)
{
    if (yaml_parser_parse(&c->p, ev))
        return 0;
    const char *problem = c->p.problem ? c->p.problem : "cannot parse";
    if (c->p.context)
        snprintf(c->err, c->errsz, "%s:%zu:%zu: YAML: %s %s", c->name, c->p.problem_mark.line + 1,
                 c->p.problem_mark.column + 1, problem, c->p.context);
    else
        snprintf(c->err, c->errsz, "%s:%zu:%zu: YAML: %s", c->name, c->p.problem_mark.line + 1,
                 c->p.problem_mark.column + 1, problem);
    return -1;
}

/* YAML's null: a plain ~, null (any case YAML 1.1 allows) or nothing */
static bool plain_null(const yaml_event_t *ev)
{
    const char *s = (const char *)ev->data.scalar.value;
    return ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           (!*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL"));
}

static int scalar_text(cparse *c, const yaml_event_t *ev, cval *out)
{
    if (memchr(ev->data.scalar.value, '\0', ev->data.scalar.length))
        return fail_at(c, ev->start_mark, "a value holds a NUL character%s", "");
    if (cval_push(out, (const char *)ev->data.scalar.value, ev->data.scalar.length) < 0)
        return fail_at(c, ev->start_mark, "out of memory%s", "");
    return 0;
}

static const anchor *find_anchor(const cparse *c, const char *name)
{
    for (size_t i = c->nanchors; i-- > 0;)
        if (!strcmp(c->anchors[i].name, name))
            return &c->anchors[i];
    return NULL;
}

static int keep_anchor(cparse *c, const yaml_char_t *name, const cval *v)
{
    if (!name)
        return 0;
    anchor *na = realloc(c->anchors, (c->nanchors + 1) * sizeof *na);
    if (!na)
        return -1;
    c->anchors = na;
    anchor *a = &c->anchors[c->nanchors];
    if (!(a->name = strdup((const char *)name)) || cval_copy(&a->val, v) < 0) {
        free(a->name);
        cval_free(&a->val);
        return -1;
    }
    c->nanchors++;
    return 0;
}

/* The items of a sequence whose start event was just read. */
static int read_list(cparse *c, const yaml_event_t *start, cval *out)
{
    out->is_list = true;
    for (;;) {
        yaml_event_t ev;
        if (next_event(c, &ev) < 0)
            return -1;
        int rc = 0;
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            return keep_anchor(c, start->data.sequence_start.anchor, out) < 0
                       ? fail_at(c, start->start_mark, "out of memory%s", "") : 0;
        }
        if (ev.type == YAML_SCALAR_EVENT) {
            rc = scalar_text(c, &ev, out);
            if (!rc && ev.data.scalar.anchor) {
                cval one = {0};
                rc = cval_push(&one, out->v[out->n - 1], strlen(out->v[out->n - 1])) < 0 ||
                     keep_anchor(c, ev.data.scalar.anchor, &one) < 0 ? fail_at(c, ev.start_mark, "out of memory%s", "") : 0;
                cval_free(&one);
            }
        } else if (ev.type == YAML_ALIAS_EVENT) {
            const anchor *a = find_anchor(c, (const char *)ev.data.alias.anchor);
            if (!a)
                rc = fail_at(c, ev.start_mark, "unknown alias *%s", (const char *)ev.data.alias.anchor);
            else if (a->val.is_list || a->val.is_null)
                rc = fail_at(c, ev.start_mark, "a list item must be a single value, not *%s",
                             (const char *)ev.data.alias.anchor);
            else
                rc = cval_push(out, a->val.v[0], strlen(a->val.v[0])) < 0 ? fail_at(c, ev.start_mark, "out of memory%s", "") : 0;
        } else {
            rc = fail_at(c, ev.start_mark, "a list item must be a single value, not a %s",
                         ev.type == YAML_MAPPING_START_EVENT ? "mapping" : "list");
        }
        yaml_event_delete(&ev);
        if (rc < 0)
            return -1;
    }
}

/* The value after a key: scalar, null, list or alias. */
static int read_value(cparse *c, const char *key, cval *out)
{
    yaml_event_t ev;
    if (next_event(c, &ev) < 0)
        return -1;
    int rc = 0;
    switch (ev.type) {
    case YAML_SCALAR_EVENT:
        if (plain_null(&ev))
            out->is_null = true;
        else
            rc = scalar_text(c, &ev, out);
        if (!rc && keep_anchor(c, ev.data.scalar.anchor, out) < 0)
            rc = fail_at(c, ev.start_mark, "out of memory%s", "");
        break;
    case YAML_SEQUENCE_START_EVENT:
        rc = read_list(c, &ev, out);
        break;
    case YAML_ALIAS_EVENT: {
        const anchor *a = find_anchor(c, (const char *)ev.data.alias.anchor);
        rc = a ? (cval_copy(out, &a->val) < 0 ? fail_at(c, ev.start_mark, "out of memory%s", "") : 0)
               : fail_at(c, ev.start_mark, "unknown alias *%s", (const char *)ev.data.alias.anchor);
        break;
    }
    default:
        rc = fail_at(c, ev.start_mark, "%s: expected a value or a list, not a mapping", key);
        break;
    }
    yaml_event_delete(&ev);
    return rc;
}

static int read_mapping(cparse *c, config_cb cb, void *ud)
{
    for (;;) {
        yaml_event_t ev;
        if (next_event(c, &ev) < 0)
            return -1;
        if (ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            return 0;
        }
        if (ev.type != YAML_SCALAR_EVENT || plain_null(&ev)) {
            int rc = fail_at(c, ev.start_mark, "expected an option name%s", "");
            yaml_event_delete(&ev);
            return rc;
        }
        yaml_mark_t at = ev.start_mark;
        char *key = strdup((const char *)ev.data.scalar.value);
        yaml_event_delete(&ev);
        char **nk = key ? realloc(c->keys, (c->nkeys + 1) * sizeof *nk) : NULL;
        if (!nk) {
            free(key);
            return fail_at(c, at, "out of memory%s", "");
        }
        c->keys = nk;
        for (size_t i = 0; i < c->nkeys; i++)
            if (!strcmp(c->keys[i], key)) {
                fail_at(c, at, "duplicate key '%s'", key);
                free(key);
                return -1;
            }
        c->keys[c->nkeys++] = key;
        cval v = {0};
        int rc = read_value(c, key, &v);
        if (rc == 0) {
            char why[512] = "";
            if (cb(ud, key, v.v, v.n, v.is_list, why, sizeof why) < 0)
                rc = fail_at(c, at, "%s", why);
        }
        cval_free(&v);
        if (rc < 0)
            return -1;
    }
}

int config_parse(const char *text, const char *name, config_cb cb, void *ud, char *err, size_t errsz)
{
    cparse c = {.name = name, .err = err, .errsz = errsz};
    if (!yaml_parser_initialize(&c.p)) {
        snprintf(err, errsz, "%s: out of memory", name);
        return -1;
    }
    yaml_parser_set_input_string(&c.p, (const unsigned char *)text, strlen(text));
    int rc = 0, docs = 0;
    for (bool done = false; !done && rc == 0;) {
        yaml_event_t ev;
        if (next_event(&c, &ev) < 0) {
            rc = -1;
            break;
        }
        switch (ev.type) {
        case YAML_STREAM_END_EVENT: done = true; break;
        case YAML_DOCUMENT_START_EVENT:
            if (++docs > 1)
                rc = fail_at(&c, ev.start_mark, "more than one YAML document%s", "");
            break;
        case YAML_MAPPING_START_EVENT: rc = read_mapping(&c, cb, ud); break;
        case YAML_SCALAR_EVENT:
            /* an empty document is no options, as in mitmproxy */
            if (!plain_null(&ev))
                rc = fail_at(&c, ev.start_mark, "expected 'option: value' lines%s", "");
            break;
        case YAML_SEQUENCE_START_EVENT: rc = fail_at(&c, ev.start_mark, "expected 'option: value' lines, not a list%s", ""); break;
        default: break;
        }
        yaml_event_delete(&ev);
    }
    for (size_t i = 0; i < c.nanchors; i++) {
        free(c.anchors[i].name);
        cval_free(&c.anchors[i].val);
    }
    free(c.anchors);
    for (size_t i = 0; i < c.nkeys; i++)
        free(c.keys[i]);
    free(c.keys);
    yaml_parser_delete(&c.p);
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
