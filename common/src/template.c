/*
 * Mapping templates (template.h): the parser that compiles a mapping string
 * once per job load into segments (literal text, or an expression: a head
 * operand and a chain of filter calls), and the evaluator that runs per row.
 *
 * Compiled templates are plain heap objects and immutable afterwards, so any
 * number of mapper threads share them. Evaluation reads the row's values by
 * ref index, allocates only from the caller's arena and hands out values
 * without copying wherever it can; the filters themselves live in filter.c.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SL_TEMPLATE_INTERNAL
#include "sluice/err.h"
#include "sluice/job.h"
#include "sluice/template.h"

struct seg {
    char *lit; /* literal text; NULL for an expression */
    size_t litlen;
    struct sl_operand head;
    struct sl_fcall *f;
    size_t nf;
};

struct sl_template {
    bool column; /* a direct copy of refs[column_ref] */
    size_t column_ref;
    struct seg *segs;
    size_t nsegs;
};

struct parser {
    const char *src;
    size_t pos;
    struct sl_refs *refs;
    char *errbuf;
    size_t errsz;
};

/* ---- refs --------------------------------------------------------------- */

/* The index of the len bytes at name in refs, added when new; -1 on OOM. */
static long refs_add(struct sl_refs *refs, const char *name, size_t len)
{
    for (size_t i = 0; i < refs->n; i++)
        if (strlen(refs->names[i]) == len && !memcmp(refs->names[i], name, len))
            return (long)i;
    if (refs->n == refs->cap) {
        size_t cap = refs->cap ? refs->cap * 2 : 16;
        char **names = realloc(refs->names, cap * sizeof(*names));
        if (!names)
            return -1;
        refs->names = names;
        refs->cap = cap;
    }
    char *s = strndup(name, len);
    if (!s)
        return -1;
    refs->names[refs->n] = s;
    return (long)refs->n++;
}

void sl_refs_cleanup(struct sl_refs *refs)
{
    if (!refs)
        return;
    for (size_t i = 0; i < refs->n; i++)
        free(refs->names[i]);
    free(refs->names);
    refs->names = NULL;
    refs->n = refs->cap = 0;
}

/* ---- parser ------------------------------------------------------------- */

__attribute__((format(printf, 2, 3))) static int perr(struct parser *p, const char *fmt, ...)
{
    if (p->errbuf && p->errsz) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->errbuf, p->errsz, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int nomem(struct parser *p)
{
    return perr(p, "out of memory");
}

static char peek(const struct parser *p)
{
    return p->src[p->pos];
}

static void skip_ws(struct parser *p)
{
    char c;
    while ((c = peek(p)) == ' ' || c == '\t' || c == '\n' || c == '\r')
        p->pos++;
}

static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-' || (unsigned char)c >= 0x80;
}

/* What is at the current position, for messages: "'x'" or "the end". */
static const char *found(const struct parser *p, char buf[8])
{
    unsigned char c = (unsigned char)peek(p);
    if (!c)
        return "the end";
    if (c < 0x20 || c >= 0x7f)
        snprintf(buf, 8, "0x%02x", c);
    else
        snprintf(buf, 8, "'%c'", c);
    return buf;
}

/* A quoted string at the current position ('...' or "..."), unescaped into
 * *out (NULL for ''). */
static int parse_string(struct parser *p, char **out)
{
    char q = peek(p);
    size_t start = p->pos++, len = 0;
    const char *s = p->src;
    for (size_t i = p->pos;; i++) {
        if (!s[i])
            return perr(p, "unterminated string at offset %zu", start);
        if (s[i] == q)
            break;
        if (s[i] == '\\' && (s[i + 1] == '\'' || s[i + 1] == '"' || s[i + 1] == '\\'))
            i++;
        len++;
    }
    char *buf = malloc(len + 1), *o = buf;
    if (!buf)
        return nomem(p);
    while (s[p->pos] != q) {
        if (s[p->pos] == '\\' &&
            (s[p->pos + 1] == '\'' || s[p->pos + 1] == '"' || s[p->pos + 1] == '\\'))
            p->pos++;
        *o++ = s[p->pos++];
    }
    *o = '\0';
    p->pos++;
    if (!len) {
        free(buf);
        buf = NULL;
    }
    *out = buf;
    return 0;
}

/* Whether s[0..n) is a number: [+-]digits[.digits]. */
static bool is_number(const char *s, size_t n)
{
    size_t i = 0, d = 0;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        i++;
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++)
        d++;
    if (!d)
        return false;
    if (i < n && s[i] == '.') {
        size_t f = 0;
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            f++;
        if (!f)
            return false;
    }
    return i == n;
}

/* An operand: 'const', "const", a number, row['X'] or a field name. */
static int parse_operand(struct parser *p, struct sl_operand *op)
{
    const char *s = p->src;
    size_t start = p->pos;
    char c = peek(p), buf[8];
    memset(op, 0, sizeof(*op));
    op->off = start;
    if (c == '\'' || c == '"') {
        op->kind = SL_OPERAND_CONST;
        return parse_string(p, &op->str);
    }
    if (!is_name_char(c) && c != '+')
        return perr(
            p, "expected a field name, row['...'] or a quoted constant at offset %zu, found %s",
            start, found(p, buf));
    size_t e = start + 1;
    while (is_name_char(s[e]))
        e++;
    if (is_number(s + start, e - start)) {
        op->kind = SL_OPERAND_CONST;
        if (!(op->str = strndup(s + start, e - start)))
            return nomem(p);
        if (!memchr(op->str, '.', e - start)) {
            errno = 0;
            long long v = strtoll(op->str, NULL, 10);
            if (!errno) {
                op->is_int = true;
                op->num = v;
            }
        }
        p->pos = e;
        return 0;
    }
    if (c == '+' || c == '-')
        return perr(p, "expected a number at offset %zu", start);
    size_t name_start = start, name_len = e - start;
    p->pos = e;
    if (name_len == 3 && !memcmp(s + start, "row", 3)) {
        skip_ws(p);
        if (peek(p) == '[') {
            p->pos++;
            skip_ws(p);
            if (peek(p) != '\'' && peek(p) != '"')
                return perr(p, "expected a quoted column name after 'row[' at offset %zu", p->pos);
            size_t qstart = p->pos;
            char *col;
            if (parse_string(p, &col))
                return -1;
            skip_ws(p);
            if (peek(p) != ']') {
                free(col);
                return perr(p, "expected ']' at offset %zu, found %s", p->pos, found(p, buf));
            }
            p->pos++;
            if (!col)
                return perr(p, "empty column name at offset %zu", qstart);
            long ref = refs_add(p->refs, col, strlen(col));
            free(col);
            if (ref < 0)
                return nomem(p);
            op->kind = SL_OPERAND_FIELD;
            op->ref = (size_t)ref;
            return 0;
        }
        p->pos = e;
    }
    long ref = refs_add(p->refs, s + name_start, name_len);
    if (ref < 0)
        return nomem(p);
    op->kind = SL_OPERAND_FIELD;
    op->ref = (size_t)ref;
    return 0;
}

static void operand_free(struct sl_operand *op)
{
    free(op->str);
    op->str = NULL;
}

static void fcall_free(struct sl_fcall *fc)
{
    sl_filter_release(fc);
    for (size_t i = 0; i < fc->nargs; i++)
        operand_free(&fc->args[i]);
    free(fc->args);
}

static int arity_error(struct parser *p, const struct sl_filter_def *def)
{
    if (def->max_args == 0)
        return perr(p, "filter '%s' takes no arguments", def->name);
    if (def->min_args == def->max_args)
        return perr(p, "filter '%s' takes %u argument%s", def->name, def->min_args,
                    def->min_args == 1 ? "" : "s");
    if (def->max_args == SL_FILTER_MAX_ARGS)
        return perr(p, "filter '%s' takes 1 to %u arguments", def->name, def->max_args);
    return perr(p, "filter '%s' takes %u or %u arguments", def->name, def->min_args, def->max_args);
}

/* A filter call after '|': name or name(arg, ...). */
static int parse_filter(struct parser *p, struct sl_fcall *fc)
{
    const char *s = p->src;
    char buf[8];
    size_t start = p->pos, e = start;
    while ((s[e] >= 'a' && s[e] <= 'z') || (s[e] >= 'A' && s[e] <= 'Z') || s[e] == '_' ||
           (e > start && s[e] >= '0' && s[e] <= '9'))
        e++;
    if (e == start)
        return perr(p, "expected a filter name after '|' at offset %zu, found %s", start,
                    found(p, buf));
    fc->off = start;
    fc->def = sl_filter_find(s + start, e - start);
    if (!fc->def) {
        const char *hint = sl_filter_suggest(s + start, e - start);
        if (hint)
            return perr(p, "unknown filter '%.*s' (did you mean '%s'?)", (int)(e - start),
                        s + start, hint);
        return perr(p, "unknown filter '%.*s' at offset %zu", (int)(e - start), s + start, start);
    }
    p->pos = e;
    skip_ws(p);
    if (peek(p) == '(') {
        p->pos++;
        skip_ws(p);
        if (peek(p) != ')') {
            for (;;) {
                if (fc->nargs == SL_FILTER_MAX_ARGS)
                    return arity_error(p, fc->def);
                struct sl_operand *args = realloc(fc->args, (fc->nargs + 1) * sizeof(*args));
                if (!args)
                    return nomem(p);
                fc->args = args;
                if (parse_operand(p, &fc->args[fc->nargs])) {
                    operand_free(&fc->args[fc->nargs]);
                    return -1;
                }
                fc->nargs++;
                skip_ws(p);
                if (peek(p) == ',') {
                    p->pos++;
                    skip_ws(p);
                    continue;
                }
                if (peek(p) == ')')
                    break;
                if (!peek(p))
                    return perr(p, "unclosed '(' of filter '%s' at offset %zu", fc->def->name,
                                start);
                return perr(p, "expected ',' or ')' at offset %zu, found %s", p->pos,
                            found(p, buf));
            }
        }
        p->pos++;
    }
    if (fc->nargs < fc->def->min_args || fc->nargs > fc->def->max_args)
        return arity_error(p, fc->def);
    if (fc->def->prepare && fc->def->prepare(fc, p->errbuf, p->errsz))
        return -1;
    return 0;
}

/* An expression after "{{": operand, filters, "}}". open is the offset of
 * the "{{". */
static int parse_expr(struct parser *p, struct seg *sg, size_t open)
{
    char buf[8];
    skip_ws(p);
    if (!peek(p))
        return perr(p, "unclosed '{{' at offset %zu", open);
    if (peek(p) == '}' && p->src[p->pos + 1] == '}')
        return perr(p, "empty expression at offset %zu", open);
    if (parse_operand(p, &sg->head))
        return -1;
    for (;;) {
        skip_ws(p);
        char c = peek(p);
        if (c == '}' && p->src[p->pos + 1] == '}') {
            p->pos += 2;
            return 0;
        }
        if (!c)
            return perr(p, "unclosed '{{' at offset %zu", open);
        if (c != '|')
            return perr(p, "expected '|' or '}}' at offset %zu, found %s", p->pos, found(p, buf));
        p->pos++;
        skip_ws(p);
        struct sl_fcall *f = realloc(sg->f, (sg->nf + 1) * sizeof(*f));
        if (!f)
            return nomem(p);
        sg->f = f;
        memset(&sg->f[sg->nf], 0, sizeof(sg->f[0]));
        if (parse_filter(p, &sg->f[sg->nf])) {
            fcall_free(&sg->f[sg->nf]);
            return -1;
        }
        sg->nf++;
    }
}

static struct seg *seg_add(struct sl_template *tpl)
{
    struct seg *segs = realloc(tpl->segs, (tpl->nsegs + 1) * sizeof(*segs));
    if (!segs)
        return NULL;
    tpl->segs = segs;
    memset(&segs[tpl->nsegs], 0, sizeof(segs[0]));
    return &segs[tpl->nsegs++];
}

struct sl_template *sl_template_compile(const char *src, struct sl_refs *refs, char *errbuf,
                                        size_t errsz)
{
    struct parser p = {src, 0, refs, errbuf, errsz};
    struct sl_template *tpl = calloc(1, sizeof(*tpl));
    if (!tpl) {
        nomem(&p);
        return NULL;
    }
    if (!src || !refs) {
        perr(&p, "no mapping given");
        goto fail;
    }
    if (!strstr(src, "{{")) {
        if (!*src) {
            perr(&p, "the mapping is empty");
            goto fail;
        }
        long ref = refs_add(refs, src, strlen(src));
        if (ref < 0) {
            nomem(&p);
            goto fail;
        }
        tpl->column = true;
        tpl->column_ref = (size_t)ref;
        return tpl;
    }
    while (src[p.pos]) {
        const char *open = strstr(src + p.pos, "{{");
        size_t end = open ? (size_t)(open - src) : strlen(src);
        if (end > p.pos) {
            struct seg *sg = seg_add(tpl);
            if (!sg || !(sg->lit = strndup(src + p.pos, end - p.pos))) {
                nomem(&p);
                goto fail;
            }
            sg->litlen = end - p.pos;
        }
        if (!open)
            break;
        p.pos = end + 2;
        struct seg *sg = seg_add(tpl);
        if (!sg) {
            nomem(&p);
            goto fail;
        }
        if (parse_expr(&p, sg, end))
            goto fail;
    }
    return tpl;
fail:
    sl_template_destroy(tpl);
    return NULL;
}

void sl_template_destroy(struct sl_template *tpl)
{
    if (!tpl)
        return;
    for (size_t i = 0; i < tpl->nsegs; i++) {
        struct seg *sg = &tpl->segs[i];
        free(sg->lit);
        operand_free(&sg->head);
        for (size_t k = 0; k < sg->nf; k++)
            fcall_free(&sg->f[k]);
        free(sg->f);
    }
    free(tpl->segs);
    free(tpl);
}

bool sl_template_is_column(const struct sl_template *tpl, size_t *ref)
{
    if (!tpl || !tpl->column)
        return false;
    if (ref)
        *ref = tpl->column_ref;
    return true;
}

bool sl_template_input_ref(const struct sl_template *tpl, size_t *ref)
{
    if (sl_template_is_column(tpl, ref))
        return true;
    if (!tpl)
        return false;
    bool found = false;
    size_t which = 0;
    for (size_t i = 0; i < tpl->nsegs; i++) {
        const struct seg *s = &tpl->segs[i];
        if (s->lit || s->head.kind != SL_OPERAND_FIELD)
            continue;
        if (found && s->head.ref != which)
            return false; /* two different fields: no single input */
        found = true;
        which = s->head.ref;
    }
    if (found && ref)
        *ref = which;
    return found;
}

bool sl_template_reads(const struct sl_template *tpl, size_t ref)
{
    if (!tpl)
        return false;
    if (tpl->column)
        return tpl->column_ref == ref;
    for (size_t i = 0; i < tpl->nsegs; i++) {
        const struct seg *sg = &tpl->segs[i];
        if (sg->lit)
            continue;
        if (sg->head.kind == SL_OPERAND_FIELD && sg->head.ref == ref)
            return true;
        for (size_t k = 0; k < sg->nf; k++)
            for (size_t a = 0; a < sg->f[k].nargs; a++)
                if (sg->f[k].args[a].kind == SL_OPERAND_FIELD && sg->f[k].args[a].ref == ref)
                    return true;
    }
    return false;
}

int sl_template_check_lookups(const struct sl_template *tpl, const struct sl_job *job, char *errbuf,
                              size_t errsz)
{
    if (!tpl)
        return 0;
    for (size_t i = 0; i < tpl->nsegs; i++) {
        const struct seg *sg = &tpl->segs[i];
        for (size_t k = 0; k < sg->nf; k++) {
            const struct sl_fcall *fc = &sg->f[k];
            if (fc->def->id != SL_F_LOOKUP)
                continue;
            if (!job || !sl_job_lookup(job, fc->args[0].str)) {
                sl_seterr(errbuf, errsz, SL_ERR_INVALID, "unknown lookup table '%s'",
                          fc->args[0].str);
                return -1;
            }
        }
    }
    return 0;
}

/* ---- evaluation --------------------------------------------------------- */

static inline const char *operand_value(const struct sl_operand *op, const char *const *vals)
{
    if (op->kind == SL_OPERAND_CONST)
        return op->str;
    const char *v = vals[op->ref];
    return v && *v ? v : NULL;
}

static int eval_expr(const struct seg *sg, const char *const *vals, struct sl_eval_ctx *ctx,
                     const char **out, const char **errmsg)
{
    const char *v = operand_value(&sg->head, vals);
    const char *args[SL_FILTER_MAX_ARGS];
    for (size_t i = 0; i < sg->nf; i++) {
        const struct sl_fcall *fc = &sg->f[i];
        if (!v && !fc->def->sees_missing)
            continue;
        for (size_t k = 0; k < fc->nargs; k++)
            args[k] = operand_value(&fc->args[k], vals);
        int rc = fc->def->apply(fc, v, args, ctx, &v, errmsg);
        if (rc)
            return rc;
        if (v && !*v)
            v = NULL;
    }
    *out = v;
    return 0;
}

int sl_template_eval(const struct sl_template *tpl, const char *const *vals,
                     struct sl_eval_ctx *ctx, const char **out, const char **errmsg)
{
    const char *dummy;
    if (!errmsg)
        errmsg = &dummy;
    *errmsg = NULL;
    *out = NULL;
    if (tpl->column) {
        const char *v = vals[tpl->column_ref];
        *out = v && *v ? v : NULL;
        return 0;
    }
    if (tpl->nsegs == 1)
        return eval_expr(&tpl->segs[0], vals, ctx, out, errmsg);

    /* literal text and several pieces: evaluate all, then join once */
    const char *sv[16], **v = sv;
    size_t sl[16], *len = sl, total = 0;
    bool any = false;
    if (tpl->nsegs > 16) {
        v = sl_arena_alloc(ctx->arena, tpl->nsegs * sizeof(*v));
        len = sl_arena_alloc(ctx->arena, tpl->nsegs * sizeof(*len));
        if (!v || !len) {
            *errmsg = "out of memory";
            return SL_ERR_NOMEM;
        }
    }
    for (size_t i = 0; i < tpl->nsegs; i++) {
        const struct seg *sg = &tpl->segs[i];
        if (sg->lit) {
            v[i] = sg->lit;
            len[i] = sg->litlen;
        } else {
            int rc = eval_expr(sg, vals, ctx, &v[i], errmsg);
            if (rc)
                return rc;
            len[i] = v[i] ? strlen(v[i]) : 0;
            any |= v[i] != NULL;
        }
        total += len[i];
    }
    if (!any)
        return 0;
    char *buf = sl_arena_alloc(ctx->arena, total + 1), *o = buf;
    if (!buf) {
        *errmsg = "out of memory";
        return SL_ERR_NOMEM;
    }
    for (size_t i = 0; i < tpl->nsegs; i++) {
        memcpy(o, v[i] ? v[i] : "", len[i]);
        o += len[i];
    }
    *o = '\0';
    *out = buf;
    return 0;
}
