/*
 * Auto-mapping (suggest.h): a sample of a file's rows, the profile of each
 * column's values, and the mapping proposed from names and values.
 *
 * The sample is kept column by column (a value cut to SL_SUGGEST_MAX_VALUE
 * bytes, the whole within max_bytes). Matching looks at each column once:
 * its values go through every conversion of CONVS (the value as it is, or a
 * mapping filter compiled as a template, "{{ v | number('de') }}") and then
 * through sl_type_check, with a plain attribute of the conversion's type
 * for the profile and with each job attribute of that type for the fit.
 * Names are compared folded (case, separators, umlauts), word by word, and
 * through a table of synonyms; the confidence combines the name score and
 * the share of values that fit.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "sluice/buf.h"
#include "sluice/err.h"
#include "sluice/suggest.h"
#include "sluice/template.h"
#include "sluice/types.h"
#include "sluice/util.h"

/* ---- the sample ----------------------------------------------------------- */

struct col {
    char *name;        /* in the arena */
    const char **vals; /* [cap]: NULL for a missing or blank value; heap */
    size_t cap;
};

struct sl_suggest {
    size_t max_rows, max_bytes;
    size_t bytes; /* values, names and the value arrays */
    size_t nrows;
    struct col *cols;
    size_t ncols, capcols;
    bool full;
    struct sl_arena arena;
};

struct sl_suggest *sl_suggest_new(size_t max_rows, size_t max_bytes)
{
    struct sl_suggest *sg = calloc(1, sizeof(*sg));
    if (!sg)
        return NULL;
    sg->max_rows = max_rows ? max_rows : SL_SUGGEST_ROWS;
    sg->max_bytes = max_bytes ? max_bytes : SL_SUGGEST_MAX_BYTES;
    sl_arena_init(&sg->arena);
    return sg;
}

void sl_suggest_destroy(struct sl_suggest *sg)
{
    if (!sg)
        return;
    for (size_t i = 0; i < sg->ncols; i++)
        free(sg->cols[i].vals);
    free(sg->cols);
    sl_arena_cleanup(&sg->arena);
    free(sg);
}

size_t sl_suggest_nrows(const struct sl_suggest *sg)
{
    return sg->nrows;
}

size_t sl_suggest_ncolumns(const struct sl_suggest *sg)
{
    return sg->ncols;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* The bounds of s[0..n) without surrounding white space (ASCII and the
 * no-break space U+00A0, as sl_type_check trims). */
static void trim_bounds(const char *s, size_t n, size_t *b, size_t *e)
{
    size_t i = 0, j = n;
    for (;;) {
        if (i < j && is_space(s[i]))
            i++;
        else if (i + 1 < j && (unsigned char)s[i] == 0xc2 && (unsigned char)s[i + 1] == 0xa0)
            i += 2;
        else
            break;
    }
    for (;;) {
        if (j > i && is_space(s[j - 1]))
            j--;
        else if (j >= i + 2 && (unsigned char)s[j - 2] == 0xc2 && (unsigned char)s[j - 1] == 0xa0)
            j -= 2;
        else
            break;
    }
    *b = i;
    *e = j;
}

/* The column named name: hint first (a header's position), then all. */
static long find_col(const struct sl_suggest *sg, const char *name, size_t hint)
{
    if (hint < sg->ncols && !strcmp(sg->cols[hint].name, name))
        return (long)hint;
    for (size_t i = 0; i < sg->ncols; i++)
        if (!strcmp(sg->cols[i].name, name))
            return (long)i;
    return -1;
}

/* The column named name, added when new: its index, -1 past
 * SL_SUGGEST_MAX_COLUMNS (the column is left out), SL_ERR_NOMEM. */
static long col_get(struct sl_suggest *sg, const char *name, size_t hint)
{
    long c = find_col(sg, name, hint);
    if (c >= 0)
        return c;
    if (sg->ncols >= SL_SUGGEST_MAX_COLUMNS)
        return -1;
    if (sg->ncols == sg->capcols) {
        size_t cap = sg->capcols ? sg->capcols * 2 : 16;
        struct col *cols = realloc(sg->cols, cap * sizeof(*cols));
        if (!cols)
            return SL_ERR_NOMEM;
        sg->cols = cols;
        sg->capcols = cap;
    }
    struct col *cl = &sg->cols[sg->ncols];
    memset(cl, 0, sizeof(*cl));
    if (!(cl->name = sl_arena_strdup(&sg->arena, name)))
        return SL_ERR_NOMEM;
    sg->bytes += sizeof(*cl) + strlen(name) + 1;
    return (long)sg->ncols++;
}

int sl_suggest_header(struct sl_suggest *sg, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (col_get(sg, names[i], i) == SL_ERR_NOMEM)
            return SL_ERR_NOMEM;
    return 0;
}

/* The length of s[0..n) cut to at most max bytes at a character boundary. */
static size_t cut_utf8(const char *s, size_t n, size_t max)
{
    if (n <= max)
        return n;
    while (max > 0 && ((unsigned char)s[max] & 0xc0) == 0x80)
        max--;
    return max;
}

int sl_suggest_row(struct sl_suggest *sg, const struct sl_row *row)
{
    if (sg->full)
        return 1;
    if (row->n == 0)
        return 0; /* a record that is no object: nothing to learn from */
    size_t r = sg->nrows;
    for (size_t i = 0; i < row->n; i++) {
        long c = col_get(sg, row->names[i], i);
        if (c == SL_ERR_NOMEM)
            return SL_ERR_NOMEM;
        const char *v = row->values[i];
        if (c < 0 || !v)
            continue;
        size_t n = row->lens ? row->lens[i] : strlen(v), b, e;
        trim_bounds(v, n, &b, &e);
        if (b == e)
            continue; /* an empty value is a missing one */
        struct col *cl = &sg->cols[c];
        if (r >= cl->cap) {
            size_t cap = cl->cap ? cl->cap : 16;
            while (cap <= r)
                cap *= 2;
            const char **vals = realloc(cl->vals, cap * sizeof(*vals));
            if (!vals)
                return SL_ERR_NOMEM;
            memset(vals + cl->cap, 0, (cap - cl->cap) * sizeof(*vals));
            sg->bytes += (cap - cl->cap) * sizeof(*vals);
            cl->vals = vals;
            cl->cap = cap;
        }
        n = cut_utf8(v, n, SL_SUGGEST_MAX_VALUE);
        if (!(cl->vals[r] = sl_arena_strndup(&sg->arena, v, n)))
            return SL_ERR_NOMEM;
        sg->bytes += n + 1;
    }
    sg->nrows++;
    if (sg->nrows >= sg->max_rows || sg->bytes >= sg->max_bytes)
        sg->full = true;
    return sg->full ? 1 : 0;
}

/* ---- names ---------------------------------------------------------------- */

#define NAME_MAX_LEN 128
#define TOK_MAX      12
#define TOK_LEN      48
#define GRP_MAX      6

/* Groups of names that mean the same, folded (sl_suggest_fold). A name may
 * be in more than one group ("filiale" is a store and a store's number). */
static const char *const SYNONYMS[][20] = {
    {"email", "mail", "emailadresse", "emailaddress", "mailadresse", "epost", "courriel",
     "emailadr"},
    {"zip", "plz", "zipcode", "postalcode", "postcode", "postleitzahl", "postal", "cp"},
    {"phone", "tel", "telefon", "telephone", "phonenumber", "telefonnummer", "telnr", "telno",
     "mobile", "mobil", "handy", "mobilnummer", "mobilephone", "mobiltelefon", "cell", "cellphone",
     "fon", "rufnummer", "festnetz"},
    {"mobile", "mobil", "handy", "mobilnummer", "mobilephone", "mobiltelefon", "cell", "cellphone",
     "handynummer"},
    {"fax", "telefax", "faxnummer", "faxnumber", "faxnr"},
    {"name", "bezeichnung", "label", "benennung", "displayname"},
    {"title", "titel", "bezeichnung", "artikelbezeichnung", "produktbezeichnung", "headline",
     "ueberschrift", "subject", "betreff"},
    {"firstname", "vorname", "givenname", "forename"},
    {"lastname", "nachname", "surname", "familyname", "familienname"},
    {"street", "strasse", "address", "adresse", "anschrift", "str", "streetaddress", "addressline",
     "addressline1", "strassehausnummer", "strassehausnr", "addr"},
    {"housenumber", "hausnummer", "hausnr", "hnr", "streetnumber"},
    {"city", "ort", "stadt", "town", "wohnort", "gemeinde", "locality", "ortschaft", "ortsname"},
    {"country", "land", "staat", "countrycode", "laendercode", "laenderkennzeichen", "nation",
     "countryname"},
    {"state", "bundesland", "province", "provinz", "kanton"},
    {"region", "gebiet", "bezirk", "vertriebsgebiet", "area", "regionid", "regionnr"},
    {"id", "nr", "nummer", "number", "no", "num", "key", "identifier", "kennung", "schluessel"},
    {"storeid",      "store",    "storeno",     "storenumber", "storenr",  "filiale",   "filialnr",
     "filialnummer", "filialid", "branch",      "branchid",    "branchno", "shop",      "shopid",
     "markt",        "marktnr",  "marktnummer", "standort",    "location", "locationid"},
    {"customerid", "kundennr", "kundennummer", "kundenid", "customerno", "customernumber",
     "clientid", "debitor", "debitorennummer", "debitornr"},
    {"customer", "kunde", "client", "kundenname", "customername"},
    {"revenue", "umsatz", "sales", "turnover", "erloes", "erloese", "umsatzerloese", "income"},
    {"amount", "betrag", "summe", "total", "gesamt", "gesamtbetrag", "value", "wert"},
    {"price", "preis", "unitprice", "einzelpreis", "stueckpreis", "listprice", "listenpreis"},
    {"quantity", "menge", "anzahl", "qty", "count", "stueck", "stueckzahl", "amountofitems"},
    {"currency", "waehrung", "curr", "ccy", "cur", "currencycode", "waehrungscode",
     "waehrungskennzeichen", "devise", "iso4217"},
    {"opened", "openedon", "openedat", "opening", "openingdate", "opendate", "eroeffnung",
     "eroeffnet", "eroeffnungsdatum", "eroeffnetam", "openedsince", "seit"},
    {"closed", "closedon", "closedat", "closing", "closingdate", "schliessung", "geschlossen",
     "geschlossenam", "schliessdatum", "schliessungsdatum"},
    {"created", "createdat", "createdon", "creationdate", "erstellt", "erstelltam", "angelegt",
     "angelegtam", "anlagedatum", "erstellungsdatum", "erfasstam"},
    {"updated", "updatedat", "updatedon", "modified", "modifiedat", "lastmodified", "geaendert",
     "geaendertam", "aenderungsdatum", "changed", "changedat", "lastchange", "letzteaenderung"},
    {"date", "datum", "day", "tag"},
    {"deliverydate", "lieferdatum", "liefertermin", "shippingdate", "versanddatum", "shipdate"},
    {"birthdate", "dateofbirth", "dob", "birthday", "geburtsdatum", "geburtstag", "gebdatum"},
    {"status", "zustand", "stat"},
    {"active", "aktiv", "enabled", "isactive", "activated", "aktiviert"},
    {"description", "beschreibung", "desc", "details"},
    {"note", "notes", "comment", "comments", "bemerkung", "bemerkungen", "kommentar", "notiz",
     "hinweis", "remark", "remarks", "anmerkung"},
    {"url", "website", "homepage", "webseite", "web", "link", "internetadresse", "www",
     "webadresse", "internet"},
    {"company", "firma", "unternehmen", "firmenname", "organisation", "organization", "org",
     "companyname"},
    {"staff", "employees", "mitarbeiter", "headcount", "beschaeftigte", "personal",
     "mitarbeiterzahl", "anzahlmitarbeiter", "employeecount"},
    {"manager", "leiter", "filialleiter", "marktleiter", "verantwortlich", "storemanager"},
    {"category", "kategorie", "gruppe", "group", "warengruppe", "productgroup"},
    {"type", "typ", "art", "kind"},
    {"sku", "artikelnummer", "artnr", "articlenumber", "itemnumber", "productnumber",
     "produktnummer", "materialnummer", "itemno", "articleno"},
    {"product", "produkt", "artikel", "article", "item", "ware", "productname", "artikelname"},
    {"vatid", "ustid", "ustidnr", "umsatzsteuerid", "vatnumber", "taxid", "steuernummer"},
    {"tax", "steuer", "mwst", "vat", "ust", "umsatzsteuer"},
    {"salutation", "anrede"},
    {"gender", "geschlecht", "sex"},
    {"language", "sprache", "lang", "locale"},
    {"latitude", "lat", "breitengrad", "breite"},
    {"longitude", "lon", "lng", "laengengrad", "laenge"},
    {"weight", "gewicht"},
    {"orderid", "auftragsnummer", "bestellnummer", "ordernumber", "orderno", "auftragsnr",
     "bestellnr"},
    {"invoiceid", "rechnungsnummer", "invoicenumber", "rechnungsnr", "invoiceno"},
    {"discount", "rabatt", "nachlass"},
    {"contact", "kontakt", "ansprechpartner", "contactperson", "contactname"},
    {"department", "abteilung"},
    {"employeeid", "personalnummer", "persnr", "mitarbeiternummer", "personalnr"},
    {"validfrom", "gueltigab", "gueltigvon", "startdate", "beginn", "start", "von", "from"},
    {"validto", "gueltigbis", "enddate", "ende", "end", "bis", "until"},
    {"year", "jahr"},
    {"month", "monat"},
    {"time", "zeit", "uhrzeit"},
    {"timestamp", "zeitstempel", "datetime"},
};

/* Words that say nothing of a name's meaning ("date of birth"). */
static const char *const STOP_WORDS[] = {
    "of",  "on",  "at",  "in", "the", "a",   "an",  "der", "die", "das", "des",  "dem",
    "den", "von", "vom", "am", "im",  "zum", "zur", "und", "and", "for", "fuer", NULL,
};

/* Words that make a column an identifier (key candidates). */
static const char *const ID_WORDS[] = {"id",     "nr",     "no",      "num",        "key",
                                       "nummer", "number", "kennung", "schluessel", "uuid",
                                       "guid",   "sku",    "ean",     "code",       NULL};

enum { K_SEP = 0, K_LOWER, K_UPPER, K_DIGIT, K_OTHER };

/* Latin-1 letters U+00C0..U+00FF in ASCII; NULL: × and ÷. */
static const char *const LATIN1[64] = {
    "a", "a", "a", "a", "ae", "a", "ae", "c",  "e", "e", "e", "e", "i",  "i", "i",  "i",
    "d", "n", "o", "o", "o",  "o", "oe", NULL, "o", "u", "u", "u", "ue", "y", "th", "ss",
    "a", "a", "a", "a", "ae", "a", "ae", "c",  "e", "e", "e", "e", "i",  "i", "i",  "i",
    "d", "n", "o", "o", "o",  "o", "oe", NULL, "o", "u", "u", "u", "ue", "y", "th", "y",
};

/* Decodes the UTF-8 character at s (n bytes left) into *cp; returns its
 * length (1 with cp 0xfffd for an invalid byte). */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char c = s[0];
    size_t len = c < 0x80             ? 1
                 : (c & 0xe0) == 0xc0 ? 2
                 : (c & 0xf0) == 0xe0 ? 3
                 : (c & 0xf8) == 0xf0 ? 4
                                      : 0;
    if (!len || len > n) {
        *cp = 0xfffd;
        return 1;
    }
    uint32_t v = len == 1 ? c : len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            *cp = 0xfffd;
            return 1;
        }
        v = (v << 6) | (s[i] & 0x3f);
    }
    *cp = v;
    return len;
}

/* What code point cp is for names, and its folded text (into buf[8]). */
static int fold_cp(uint32_t cp, const unsigned char *raw, size_t rawlen, char buf[8])
{
    buf[0] = '\0';
    if (cp < 0x80) {
        if (cp >= 'a' && cp <= 'z') {
            buf[0] = (char)cp;
            buf[1] = '\0';
            return K_LOWER;
        }
        if (cp >= 'A' && cp <= 'Z') {
            buf[0] = (char)(cp - 'A' + 'a');
            buf[1] = '\0';
            return K_UPPER;
        }
        if (cp >= '0' && cp <= '9') {
            buf[0] = (char)cp;
            buf[1] = '\0';
            return K_DIGIT;
        }
        return K_SEP;
    }
    if (cp < 0xc0 || cp == 0xd7 || cp == 0xf7 || cp == 0xfffd || (cp >= 0x2000 && cp < 0x2070) ||
        cp == 0x3000 || cp == 0xfeff)
        return K_SEP; /* no-break space, symbols, general punctuation */
    if (cp <= 0xff) {
        strcpy(buf, LATIN1[cp - 0xc0]);
        return cp < 0xdf ? K_UPPER : K_LOWER;
    }
    if (cp == 0x1e9e) { /* capital sharp s */
        strcpy(buf, "ss");
        return K_UPPER;
    }
    memcpy(buf, raw, rawlen); /* any other letter: as it is */
    buf[rawlen] = '\0';
    return K_OTHER;
}

/* A name taken apart for matching. */
struct name {
    char norm[NAME_MAX_LEN]; /* folded, no separators */
    char tok[TOK_MAX][TOK_LEN];
    int ntok;
    bool stop[TOK_MAX]; /* a stop word */
    short grp[GRP_MAX]; /* SYNONYMS groups of norm */
    int ngrp;
    short tgrp[TOK_MAX][GRP_MAX]; /* and of each word */
    int ntgrp[TOK_MAX];
};

static int groups_of(const char *term, short *out)
{
    int n = 0;
    if (!term[0])
        return 0;
    for (size_t g = 0; g < SL_ARRAY_LEN(SYNONYMS) && n < GRP_MAX; g++)
        for (size_t k = 0; k < SL_ARRAY_LEN(SYNONYMS[g]) && SYNONYMS[g][k]; k++)
            if (!strcmp(SYNONYMS[g][k], term)) {
                out[n++] = (short)g;
                break;
            }
    return n;
}

static bool in_list(const char *const *list, const char *s)
{
    for (size_t i = 0; list[i]; i++)
        if (!strcmp(list[i], s))
            return true;
    return false;
}

/* Splits s into words (at separators and at camelCase: "StoreId") and folds
 * them; with groups, looks up the synonym groups too. */
static void name_parse(const char *s, struct name *nm, bool groups)
{
    memset(nm, 0, sizeof(*nm));
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s), nlen = 0, tlen = 0;
    int prev = K_SEP;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t len = utf8_next(p + i, n - i, &cp);
        char buf[8];
        int kind = fold_cp(cp, p + i, len, buf);
        i += len;
        bool split = kind == K_SEP || (kind == K_UPPER && (prev == K_LOWER || prev == K_DIGIT));
        if (split && tlen) {
            if (nm->ntok < TOK_MAX)
                nm->ntok++;
            tlen = 0;
        }
        prev = kind;
        if (kind == K_SEP)
            continue;
        size_t bl = strlen(buf);
        if (nlen + bl < NAME_MAX_LEN) {
            memcpy(nm->norm + nlen, buf, bl + 1);
            nlen += bl;
        }
        if (nm->ntok < TOK_MAX && tlen + bl < TOK_LEN) {
            memcpy(nm->tok[nm->ntok] + tlen, buf, bl + 1);
            tlen += bl;
        }
    }
    if (tlen && nm->ntok < TOK_MAX)
        nm->ntok++;
    /* a letter on its own belongs to the next word: "E-Mail" is "email" */
    for (int t = 0; t + 1 < nm->ntok; t++) {
        char *w = nm->tok[t];
        if (w[0] >= 'a' && w[0] <= 'z' && !w[1] && strlen(nm->tok[t + 1]) + 1 < TOK_LEN) {
            memmove(w + 1, nm->tok[t + 1], strlen(nm->tok[t + 1]) + 1);
            memmove(nm->tok[t + 1], nm->tok[t + 2], (size_t)(nm->ntok - t - 2) * TOK_LEN);
            nm->ntok--;
        }
    }
    bool all_stop = true;
    for (int t = 0; t < nm->ntok; t++)
        all_stop &= (nm->stop[t] = in_list(STOP_WORDS, nm->tok[t]));
    if (all_stop)
        memset(nm->stop, 0, sizeof(nm->stop));
    if (!groups)
        return;
    nm->ngrp = groups_of(nm->norm, nm->grp);
    for (int t = 0; t < nm->ntok; t++)
        nm->ntgrp[t] = groups_of(nm->tok[t], nm->tgrp[t]);
}

char *sl_suggest_fold(const char *s, char *out, size_t outsz)
{
    struct name nm;
    name_parse(s, &nm, false);
    snprintf(out, outsz, "%s", nm.norm);
    return out;
}

char *sl_suggest_ident(const char *col, char *out, size_t outsz)
{
    const unsigned char *p = (const unsigned char *)col;
    size_t n = strlen(col), o = 0, max = outsz - 1 < 63 ? outsz - 1 : 63;
    int prev = K_SEP;
    bool word_start = true;
    for (size_t i = 0; i < n && o < max;) {
        uint32_t cp;
        char buf[8];
        size_t len = utf8_next(p + i, n - i, &cp);
        int kind = fold_cp(cp, p + i, len, buf);
        i += len;
        /* words as name_parse has them: at separators and camelCase */
        if (kind == K_SEP || (kind == K_UPPER && (prev == K_LOWER || prev == K_DIGIT)))
            word_start = true;
        prev = kind;
        if (kind == K_SEP || kind == K_OTHER)
            continue; /* letters beyond Latin-1 have no ASCII spelling */
        for (const char *c = buf; *c && o < max; c++) {
            if (o == 0 && *c >= '0' && *c <= '9')
                for (const char *pre = "col_"; *pre && o < max; pre++)
                    out[o++] = *pre;
            else if (word_start && o && o < max)
                out[o++] = '_';
            word_start = false;
            if (o < max)
                out[o++] = *c;
        }
    }
    while (o && out[o - 1] == '_')
        o--;
    out[o] = '\0';
    if (!o)
        snprintf(out, outsz, "column");
    return out;
}

static bool share_group(const short *a, int na, const short *b, int nb)
{
    for (int i = 0; i < na; i++)
        for (int j = 0; j < nb; j++)
            if (a[i] == b[j])
                return true;
    return false;
}

/* Whether the longer of x and y holds the shorter (at least 4 bytes) and
 * is longer than it. */
static bool contains(const char *x, const char *y)
{
    size_t lx = strlen(x), ly = strlen(y);
    if (lx == ly || (lx < ly ? lx : ly) < 4)
        return false;
    return lx > ly ? strstr(x, y) != NULL : strstr(y, x) != NULL;
}

/* A synonym of groups grp[0..ngrp) (at least 4 bytes) inside y and
 * shorter than it ("datum" in "lieferdatum"), or NULL. */
static const char *synonym_inside(const short *grp, int ngrp, const char *y)
{
    size_t ly = strlen(y);
    for (int g = 0; g < ngrp; g++)
        for (size_t k = 0; k < SL_ARRAY_LEN(SYNONYMS[0]) && SYNONYMS[grp[g]][k]; k++) {
            const char *t = SYNONYMS[grp[g]][k];
            size_t lt = strlen(t);
            if (lt >= 4 && lt < ly && strstr(y, t))
                return t;
        }
    return NULL;
}

/* How well word i of a and word j of c match: the same 1, synonyms 0.9,
 * one inside the other 0.7, a synonym of one inside the other 0.6. */
static double word_match(const struct name *a, int i, const struct name *c, int j)
{
    if (!strcmp(a->tok[i], c->tok[j]))
        return 1.0;
    if (share_group(a->tgrp[i], a->ntgrp[i], c->tgrp[j], c->ntgrp[j]))
        return 0.9;
    if (contains(a->tok[i], c->tok[j]))
        return 0.7;
    if (synonym_inside(a->tgrp[i], a->ntgrp[i], c->tok[j]) ||
        synonym_inside(c->tgrp[j], c->ntgrp[j], a->tok[i]))
        return 0.6;
    return 0;
}

static bool all_digits(const char *s)
{
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

/* Word by word: the weighted share of each side's words that the other
 * side has (a number weighs little: "Telefon 2"), at most 0.85. */
static double words_score(const struct name *a, const struct name *c, char *why, size_t whysz)
{
    double sum = 0, weight = 0, best = 0;
    int bi = -1, bj = -1;
    for (int side = 0; side < 2; side++) {
        const struct name *x = side ? c : a, *y = side ? a : c;
        for (int i = 0; i < x->ntok; i++) {
            if (x->stop[i])
                continue;
            double w = all_digits(x->tok[i]) ? 0.25 : 1.0, m = 0;
            for (int j = 0; j < y->ntok; j++) {
                if (y->stop[j])
                    continue;
                double s = side ? word_match(a, j, c, i) : word_match(a, i, c, j);
                if (s > m)
                    m = s;
                if (s > best) {
                    best = s;
                    bi = side ? j : i;
                    bj = side ? i : j;
                }
            }
            sum += w * m;
            weight += w;
        }
    }
    if (weight == 0 || best == 0)
        return 0;
    if (why && bi >= 0)
        snprintf(why, whysz, "similar name (%s ~ %s)", a->tok[bi], c->tok[bj]);
    return sum / weight * 0.85;
}

static size_t levenshtein(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[NAME_MAX_LEN + 1];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t v = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < v)
                v = up + 1;
            if (row[j - 1] + 1 < v)
                v = row[j - 1] + 1;
            row[j] = v;
            diag = up;
        }
    }
    return row[lb];
}

static double name_score(const struct name *a, const struct name *c, char *why, size_t whysz)
{
    char tmp[3][NAME_MAX_LEN + 64] = {"", "", ""};
    if (why && whysz)
        why[0] = '\0';
    if (!a->norm[0] || !c->norm[0])
        return 0;
    if (!strcmp(a->norm, c->norm)) {
        if (why)
            snprintf(why, whysz, "name");
        return 1.0;
    }
    /* synonyms, as whole names or word by word */
    double syn = 0;
    if (share_group(a->grp, a->ngrp, c->grp, c->ngrp)) {
        syn = 0.9;
        snprintf(tmp[0], sizeof(tmp[0]), "synonym of %s", c->norm);
    } else {
        syn = words_score(a, c, tmp[0], sizeof(tmp[0]));
    }
    /* one name inside the other ("kontaktemail"), also through a synonym
     * ("telefonnummer2"); not on top of a synonym of the whole */
    double inside = 0;
    if (syn < 0.9) {
        const char *t;
        if (contains(a->norm, c->norm)) {
            inside = 0.7;
            snprintf(tmp[1], sizeof(tmp[1]), "name contains %s",
                     strlen(a->norm) < strlen(c->norm) ? a->norm : c->norm);
        } else if ((t = synonym_inside(a->grp, a->ngrp, c->norm)) ||
                   (t = synonym_inside(c->grp, c->ngrp, a->norm))) {
            inside = 0.6;
            snprintf(tmp[1], sizeof(tmp[1]), "name contains %s", t);
        }
    }
    /* similar spelling ("mobil" / "mobile", "adress" / "address") */
    double spell = 0;
    size_t la = strlen(a->norm), lc = strlen(c->norm);
    if (la >= 4 && lc >= 4) {
        double sim = 1.0 - (double)levenshtein(a->norm, c->norm) / (double)(la > lc ? la : lc);
        if (sim >= 0.75) {
            spell = 0.8 * sim;
            snprintf(tmp[2], sizeof(tmp[2]), "similar spelling");
        }
    }
    /* words and containment see the same thing: the stronger counts;
     * spelling is evidence of its own */
    double s = 1.0 - (1.0 - (syn > inside ? syn : inside)) * (1.0 - spell);
    if (s > 0.97)
        s = 0.97;
    if (why && s > 0) {
        int k = syn >= inside && syn >= spell ? 0 : inside >= spell ? 1 : 2;
        snprintf(why, whysz, "%s", tmp[k]);
    }
    return s;
}

double sl_suggest_name_score(const char *attr, const char *col, char *why, size_t whysz)
{
    struct name *a = malloc(sizeof(*a)), *c = malloc(sizeof(*c));
    double s = 0;
    if (a && c) {
        name_parse(attr, a, true);
        name_parse(col, c, true);
        s = name_score(a, c, why, whysz);
    }
    free(a);
    free(c);
    return s;
}

/* Whether a column's name says it identifies a record ("Kundennummer",
 * "Store ID", "Filialnr", "sku"). */
static bool id_like(const struct name *nm)
{
    for (int t = 0; t < nm->ntok; t++) {
        const char *w = nm->tok[t];
        size_t lw = strlen(w);
        if (in_list(ID_WORDS, w))
            return true;
        for (size_t k = 0; ID_WORDS[k]; k++) {
            size_t lk = strlen(ID_WORDS[k]);
            if (lk >= 4 && lw > lk && !strcmp(w + lw - lk, ID_WORDS[k]))
                return true; /* "kundennummer" */
        }
        if (lw > 4 && !strcmp(w + lw - 2, "nr"))
            return true; /* "filialnr" */
    }
    return false;
}

/* Whether the name (or one of its words) is in the synonym group whose
 * first name is first ("zip": PLZ, Postleitzahl). */
static bool in_group(const struct name *nm, const char *first)
{
    for (int g = 0; g < nm->ngrp; g++)
        if (!strcmp(SYNONYMS[nm->grp[g]][0], first))
            return true;
    for (int t = 0; t < nm->ntok; t++)
        for (int g = 0; g < nm->ntgrp[t]; g++)
            if (!strcmp(SYNONYMS[nm->tgrp[t][g]][0], first))
                return true;
    return false;
}

/* ---- conversions and the profile of a column --------------------------------- */

/* The filters a column's values may need, as template filter text. */
enum {
    F_NONE = 0,
    F_NUM_DE,
    F_NUM_EN,
    F_DATE_DE,
    F_DATE_DE2,
    F_DATE_US,
    F_DATE_EU,
    F_DT_DE_S,
    F_DT_DE,
    F_DT_US_S,
    F_CURRENCY,
    NFILTERS
};

static const char *const FILTERS[NFILTERS] = {
    NULL,
    "number('de')",
    "number('en')",
    "date('%d.%m.%Y')",
    "date('%d.%m.%y')",
    "date('%m/%d/%Y')",
    "date('%d/%m/%Y')",
    "datetime('%d.%m.%Y %H:%M:%S')",
    "datetime('%d.%m.%Y %H:%M')",
    "datetime('%m/%d/%Y %H:%M:%S')",
    "currency_code",
};

/* A way of reading a column as a type: the value as it is or through a
 * filter. Of two conversions that fit as many values, the earlier wins (so
 * the value as it is wins over a filter). */
struct conv {
    enum sl_type type;
    int filter;
    const char *what; /* "values: 98% <what>" */
};

static const struct conv CONVS[] = {
    {SL_TYPE_TEXT, F_NONE, "text"},
    {SL_TYPE_ENUM, F_NONE, "allowed values"},
    {SL_TYPE_BOOLEAN, F_NONE, "booleans"},
    {SL_TYPE_EMAIL, F_NONE, "e-mail"},
    {SL_TYPE_URL, F_NONE, "URLs"},
    {SL_TYPE_PHONE, F_NONE, "phone numbers"},
    {SL_TYPE_CURRENCY, F_NONE, "currency codes"},
    {SL_TYPE_CURRENCY, F_CURRENCY, "currency codes and symbols"},
    {SL_TYPE_DATE, F_NONE, "ISO dates"},
    {SL_TYPE_DATE, F_DATE_DE, "dates dd.mm.yyyy"},
    {SL_TYPE_DATE, F_DATE_DE2, "dates dd.mm.yy"},
    {SL_TYPE_DATE, F_DATE_US, "dates mm/dd/yyyy"},
    {SL_TYPE_DATE, F_DATE_EU, "dates dd/mm/yyyy"},
    {SL_TYPE_DATETIME, F_NONE, "ISO datetimes"},
    {SL_TYPE_DATETIME, F_DT_DE_S, "datetimes dd.mm.yyyy hh:mm:ss"},
    {SL_TYPE_DATETIME, F_DT_DE, "datetimes dd.mm.yyyy hh:mm"},
    {SL_TYPE_DATETIME, F_DT_US_S, "datetimes mm/dd/yyyy hh:mm:ss"},
    {SL_TYPE_INTEGER, F_NONE, "integers"},
    {SL_TYPE_INTEGER, F_NUM_DE, "integers 1.234"},
    {SL_TYPE_INTEGER, F_NUM_EN, "integers 1,234"},
    {SL_TYPE_DECIMAL, F_NONE, "decimals"},
    {SL_TYPE_DECIMAL, F_NUM_DE, "German numbers 1.234,56"},
    {SL_TYPE_DECIMAL, F_NUM_EN, "English numbers 1,234.56"},
};
#define NCONVS SL_ARRAY_LEN(CONVS)

/* How much the values alone say for an attribute of a type (no name in
 * common): an e-mail column fits an e-mail attribute; integers say little. */
static double values_weight(enum sl_type t)
{
    switch (t) {
    case SL_TYPE_EMAIL:
    case SL_TYPE_URL:
    case SL_TYPE_ENUM:
        return 0.6;
    case SL_TYPE_PHONE:
    case SL_TYPE_DATE:
    case SL_TYPE_DATETIME:
    case SL_TYPE_CURRENCY:
        return 0.5;
    case SL_TYPE_BOOLEAN:
        return 0.3;
    case SL_TYPE_INTEGER:
    case SL_TYPE_DECIMAL:
        return 0.2;
    default:
        return 0;
    }
}

#define ENUM_MAX   12 /* an enumeration has at most this many values */
#define TYPE_SHARE 0.9

/* What a column's values are, for the profile and the target proposed. */
struct prof {
    size_t nonempty;
    bool unique; /* every row has a value, no value twice */
    size_t lead0;
    size_t ok[NCONVS];
    size_t national; /* phone numbers only with a region (DE) */
    int scale[NCONVS];
    const char *enumv[ENUM_MAX];
    size_t nenum;
    bool enum_more, enum_long;
    /* the type proposed */
    enum sl_type type;
    int conv;     /* index in CONVS */
    double share; /* of the values that fit */
    int dscale;   /* decimal */
    const char *reason;
};

/* The state of one match. */
struct match {
    const struct sl_suggest *sg;
    const struct sl_job *job;
    struct sl_template *tpl[NFILTERS];
    struct sl_refs refs;
    struct sl_attr plain[SL_TYPE_ENUM + 1]; /* an attribute of each type, no options */
    struct sl_attr phone_de;
    struct sl_arena scratch; /* one column's conversions */
    struct sl_arena *out;    /* the result's */
    struct name *anames;     /* the job's attributes */
    struct prof *profs;      /* [ncols] */
    struct name *cnames;     /* [ncols] */
};

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

/* The values of column c that are not missing, trimmed, into the scratch
 * arena; raw (as the mapping sees them) too. NULL when out of memory. */
static const char **col_values(struct match *m, size_t c, const char ***raw)
{
    const struct col *cl = &m->sg->cols[c];
    size_t n = 0, rows = m->sg->nrows < cl->cap ? m->sg->nrows : cl->cap;
    const char **v = sl_arena_calloc(&m->scratch, rows + 1, sizeof(*v));
    *raw = sl_arena_calloc(&m->scratch, rows + 1, sizeof(**raw));
    if (!v || !*raw)
        return NULL;
    for (size_t r = 0; r < rows; r++) {
        const char *s = cl->vals[r];
        if (!s)
            continue;
        size_t b, e;
        trim_bounds(s, strlen(s), &b, &e);
        (*raw)[n] = s;
        if (!(v[n++] = b == 0 && s[e] == '\0' ? s : sl_arena_strndup(&m->scratch, s + b, e - b)))
            return NULL;
    }
    return v;
}

static int fraction_digits(const char *s)
{
    const char *dot = strchr(s, '.');
    return dot ? (int)strlen(dot + 1) : 0;
}

/* The result of filter f for value v when it is known without running the
 * filter: v itself (a number without separators, a date without '.' or '/':
 * the filters take them as the value as it is) or NULL (it cannot
 * convert: letters in a number, one '.' in a date); else *run is set.
 * Keeps wide files fast. */
static const char *shortcut(int f, const char *v, bool *run)
{
    *run = false;
    switch (f) {
    case F_NUM_DE:
    case F_NUM_EN:
        for (const char *p = v; *p; p++)
            if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'))
                return NULL;
        /* groups, a decimal comma, a trailing minus (SAP: 1.234,56-) */
        *run = strpbrk(v, ".,' ") || strstr(v, "\xc2\xa0") || (v[0] && strchr(v + 1, '-'));
        return v;
    case F_CURRENCY: /* a code, a symbol or a name: "EUR", "US$", "Fr." */
        *run = strlen(v) <= 16 && !strpbrk(v, "0123456789");
        return NULL;
    default: { /* dates and datetimes: two '.' or '/' (31.12.2025) or none (ISO) */
        size_t seps = 0;
        for (const char *p = v; *p; p++)
            seps += *p == '.' || *p == '/';
        *run = seps >= 2;
        return seps ? NULL : v;
    }
    }
}

/* Values of a column through filter f ([i] NULL: it does not convert). */
static int convert(struct match *m, int f, const char *const *raw, size_t n, const char ***out)
{
    const char **o = sl_arena_calloc(&m->scratch, n + 1, sizeof(*o));
    if (!o)
        return SL_ERR_NOMEM;
    struct sl_eval_ctx ctx = {.job = m->job, .arena = &m->scratch};
    for (size_t i = 0; i < n; i++) {
        bool run;
        if (f == F_NONE || (o[i] = shortcut(f, raw[i], &run), !run)) {
            o[i] = f == F_NONE ? raw[i] : o[i];
            continue;
        }
        const char *vals[1] = {raw[i]}, *res = NULL, *err = NULL;
        int rc = sl_template_eval(m->tpl[f], vals, &ctx, &res, &err);
        if (rc == SL_ERR_NOMEM)
            return SL_ERR_NOMEM;
        o[i] = rc == 0 ? res : NULL;
    }
    *out = o;
    return 0;
}

/* Whether sl_type_check could take v for type t at all: a necessary
 * condition, cheap, so that most values of another kind are turned away
 * before a check that would format its message. */
static bool may_be(enum sl_type t, const char *v)
{
    size_t b, e;
    trim_bounds(v, strlen(v), &b, &e);
    const char *s = v + b;
    size_t n = e - b, digits = 0;
    switch (t) {
    case SL_TYPE_INTEGER:
    case SL_TYPE_DECIMAL:
        if (n && (s[0] == '+' || s[0] == '-'))
            s++, n--;
        return n && ((s[0] >= '0' && s[0] <= '9') || (t == SL_TYPE_DECIMAL && s[0] == '.'));
    case SL_TYPE_BOOLEAN:
        return n <= 6;
    case SL_TYPE_DATE:
    case SL_TYPE_DATETIME:
        return n >= 10 && s[4] == '-';
    case SL_TYPE_EMAIL:
        return memchr(s, '@', n) != NULL;
    case SL_TYPE_URL:
        return n > 7 && !strncasecmp(s, "http", 4);
    case SL_TYPE_CURRENCY:
        return n == 3;
    case SL_TYPE_PHONE:
        for (size_t i = 0; i < n; i++)
            digits += s[i] >= '0' && s[i] <= '9';
        return digits >= 3;
    default:
        return true;
    }
}

/* How many of vals[0..n) attr takes; *scale gets the most fraction digits
 * of the normalized decimals. */
static int count_fit(struct match *m, const struct sl_attr *attr, const char *const *vals, size_t n,
                     int *scale)
{
    struct sl_type_problem probs[SL_TYPE_MAX_PROBLEMS];
    const struct sl_tz *tz = m->job ? m->job->tz : NULL;
    int ok = 0;
    if (scale)
        *scale = 0;
    for (size_t i = 0; i < n; i++) {
        const char *out;
        if (!vals[i] || !may_be(attr->type, vals[i]))
            continue;
        int rc = sl_type_check(attr, vals[i], tz, &m->scratch, &out, probs);
        if (rc == SL_ERR_NOMEM)
            return SL_ERR_NOMEM;
        if (rc == 0) {
            ok++;
            if (scale && fraction_digits(out) > *scale)
                *scale = fraction_digits(out);
        }
    }
    return ok;
}

static bool leading_zero(const char *s)
{
    if (s[0] != '0' || !s[1])
        return false;
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9')
            return false;
    return true;
}

/* Whether a value has the look of a phone number: at least 7 digits after
 * '+', '0', '(' or "tel:" (not an amount, not a postcode). */
static bool phone_like(const char *s)
{
    size_t d = 0;
    for (const char *p = s; *p; p++)
        d += *p >= '0' && *p <= '9';
    return d >= 7 && (s[0] == '+' || s[0] == '(' || !strncmp(s, "00", 2) || s[0] == '0' ||
                      !strncasecmp(s, "tel:", 4));
}

static const char *pct_text(struct sl_arena *a, size_t ok, size_t n, const char *what)
{
    int pct = (int)lround(100.0 * (double)ok / (double)n);
    if (ok < n && pct > 99)
        pct = 99;
    return sl_arena_printf(a, "values: %d%% %s", pct, what);
}

/* The type a column's values suggest (the profile's type, conv, share). */
static int infer(struct match *m, const struct name *nm, struct prof *pf)
{
    struct sl_arena *a = m->out;
    double n = (double)pf->nonempty;
    pf->type = SL_TYPE_TEXT;
    pf->conv = 0;
    pf->share = 1;
    pf->reason = NULL;
    if (pf->nonempty == 0) {
        pf->share = 0.5;
        pf->reason = "no values in the sample";
        return 0;
    }
    /* the best conversion of each type */
    int best[SL_TYPE_ENUM + 1];
    for (int t = 0; t <= SL_TYPE_ENUM; t++)
        best[t] = -1;
    for (size_t k = 0; k < NCONVS; k++) {
        int t = CONVS[k].type;
        if (best[t] < 0 || pf->ok[k] > pf->ok[best[t]])
            best[t] = (int)k;
    }
    double share[SL_TYPE_ENUM + 1];
    for (int t = 0; t <= SL_TYPE_ENUM; t++)
        share[t] = best[t] >= 0 ? (double)pf->ok[best[t]] / n : 0;
    bool code_like = in_group(nm, "zip") || in_group(nm, "phone");
    static const enum sl_type order[] = {
        SL_TYPE_EMAIL, SL_TYPE_URL,      SL_TYPE_DATE,    SL_TYPE_DATETIME,
        SL_TYPE_PHONE, SL_TYPE_CURRENCY, SL_TYPE_INTEGER, SL_TYPE_DECIMAL,
    };
    enum sl_type type = SL_TYPE_TEXT;
    /* booleans: all of them, two values (or one that is no digit: "x") */
    if (best[SL_TYPE_BOOLEAN] >= 0 && pf->ok[best[SL_TYPE_BOOLEAN]] == pf->nonempty &&
        !pf->enum_more && (pf->nenum == 2 || (pf->nenum == 1 && !all_digits(pf->enumv[0]))))
        type = SL_TYPE_BOOLEAN;
    for (size_t i = 0; type == SL_TYPE_TEXT && i < SL_ARRAY_LEN(order); i++) {
        enum sl_type t = order[i];
        if (share[t] < TYPE_SHARE)
            continue;
        if ((t == SL_TYPE_INTEGER || t == SL_TYPE_DECIMAL) && (pf->lead0 || code_like)) {
            pf->reason = pf->lead0 ? "values: digits with leading zeros (kept as text)"
                                   : "values: numbers, but the name says a code (kept as text)";
            break;
        }
        type = t;
    }
    /* national numbers need a region, which the values do not tell */
    if (type == SL_TYPE_TEXT && !pf->reason && (double)pf->national / n >= TYPE_SHARE) {
        size_t intl = pf->ok[best[SL_TYPE_PHONE]];
        size_t local = pf->national > intl ? pf->national - intl : 0;
        pf->reason = sl_arena_printf(a,
                                     "values: %d%% phone numbers, %d%% without a country code "
                                     "(type phone needs a region)",
                                     (int)lround(100.0 * (double)pf->national / n),
                                     (int)lround(100.0 * (double)local / n));
    }
    if (type == SL_TYPE_TEXT && !pf->reason && !pf->enum_more && !pf->enum_long && pf->nenum >= 2 &&
        pf->nonempty >= 4 && pf->nonempty >= 2 * pf->nenum) {
        pf->type = SL_TYPE_ENUM;
        pf->conv = 1;
        pf->share = 1;
        pf->reason = sl_arena_printf(a, "values: %zu distinct in %zu", pf->nenum, pf->nonempty);
        return pf->reason ? 0 : SL_ERR_NOMEM;
    }
    pf->type = type;
    if (type == SL_TYPE_TEXT) {
        if (!pf->reason)
            pf->reason = pf->unique ? "values: text, unique" : "values: text";
        return 0;
    }
    int k = best[type];
    pf->conv = k;
    pf->share = (double)pf->ok[k] / n;
    pf->dscale = pf->scale[k] < 38 ? pf->scale[k] : 38; /* the most a decimal takes */
    pf->reason = pct_text(a, pf->ok[k], pf->nonempty, CONVS[k].what);
    return pf->reason ? 0 : SL_ERR_NOMEM;
}

/* One (attribute, column) candidate. */
struct cand {
    size_t a, c;
    bool required; /* the attribute's: first among equally confident ones */
    double conf, name, fit;
    int conv;
    const char *name_why, *values_why;
};

struct cands {
    struct cand *v;
    size_t n, cap;
};

static int cand_add(struct cands *cs, const struct cand *cd)
{
    if (cs->n == cs->cap) {
        size_t cap = cs->cap ? cs->cap * 2 : 64;
        struct cand *v = realloc(cs->v, cap * sizeof(*v));
        if (!v)
            return SL_ERR_NOMEM;
        cs->v = v;
        cs->cap = cap;
    }
    cs->v[cs->n++] = *cd;
    return 0;
}

/* The confidence of a match from the name score and the share of values
 * that fit: the name counts fully when the values fit and 40% when none
 * does; the values alone count by how telling the type is. */
static double confidence(double name, double fit, enum sl_type type, bool has_values)
{
    if (!has_values)
        fit = 0.5;
    double by_name = name * (0.4 + 0.6 * fit);
    double by_values = has_values && fit >= 0.8 ? values_weight(type) * fit : 0;
    return 1.0 - (1.0 - by_name) * (1.0 - by_values);
}

/* Whether any value of the profile could be of type t: a plain attribute
 * takes at least the values a job's attribute of the type takes, but for
 * phones (a region takes more) and enums (the job's values). */
static bool may_fit(const struct prof *pf, enum sl_type t)
{
    if (t == SL_TYPE_PHONE || t == SL_TYPE_ENUM || t == SL_TYPE_TEXT)
        return true;
    for (size_t k = 0; k < NCONVS; k++)
        if (CONVS[k].type == t && pf->ok[k])
            return true;
    return false;
}

/* Profiles column c and, with a job, adds its candidates. */
static int column_pass(struct match *m, size_t c, struct cands *cs)
{
    struct prof *pf = &m->profs[c];
    const char **raw, **vals = col_values(m, c, &raw);
    if (!vals)
        return SL_ERR_NOMEM;
    size_t n = 0;
    while (vals[n])
        n++;
    pf->nonempty = n;
    /* distinct values; the enumeration (case-insensitive, first spelling) */
    const char **sorted = sl_arena_calloc(&m->scratch, n + 1, sizeof(*sorted));
    if (!sorted)
        return SL_ERR_NOMEM;
    memcpy(sorted, vals, n * sizeof(*sorted));
    qsort(sorted, n, sizeof(*sorted), cmp_str);
    size_t distinct = n ? 1 : 0;
    for (size_t i = 1; i < n; i++)
        distinct += strcmp(sorted[i - 1], sorted[i]) != 0;
    pf->unique = n == m->sg->nrows && distinct == n && n > 0;
    for (size_t i = 0; i < n && !pf->enum_more; i++) {
        size_t k = 0;
        while (k < pf->nenum && strcasecmp(pf->enumv[k], vals[i]))
            k++;
        if (k < pf->nenum)
            continue;
        if (pf->nenum == ENUM_MAX) {
            pf->enum_more = true;
            break;
        }
        if (sl_utf8_len(vals[i], strlen(vals[i])) > 40)
            pf->enum_long = true;
        if (!(pf->enumv[pf->nenum++] = sl_arena_strdup(m->out, vals[i])))
            return SL_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++)
        pf->lead0 += leading_zero(vals[i]);
    /* every conversion, checked against a plain attribute of its type */
    const char **conv[NFILTERS] = {0};
    for (int f = 0; f < NFILTERS; f++)
        if (convert(m, f, raw, n, &conv[f]))
            return SL_ERR_NOMEM;
    for (size_t k = 0; k < NCONVS; k++) {
        enum sl_type t = CONVS[k].type;
        if (t == SL_TYPE_TEXT || t == SL_TYPE_ENUM) {
            pf->ok[k] = t == SL_TYPE_TEXT ? n : 0;
            continue;
        }
        int ok = count_fit(m, &m->plain[t], conv[CONVS[k].filter], n, &pf->scale[k]);
        if (ok < 0)
            return ok;
        pf->ok[k] = (size_t)ok;
    }
    for (size_t i = 0; i < n; i++) {
        if (!phone_like(vals[i]))
            continue;
        int ok = count_fit(m, &m->phone_de, &vals[i], 1, NULL);
        if (ok < 0)
            return ok;
        pf->national += (size_t)ok;
    }
    int rc = infer(m, &m->cnames[c], pf);
    if (rc || !m->job)
        return rc;

    /* the job's attributes: the best conversion of each, and the candidate */
    for (size_t a = 0; a < m->job->nattrs; a++) {
        const struct sl_attr *at = &m->job->attrs[a];
        char why[NAME_MAX_LEN + 64] = "";
        struct cand cd = {.a = a, .c = c, .conv = -1, .required = at->required};
        cd.name = name_score(&m->anames[a], &m->cnames[c], why, sizeof(why));
        if (cd.name == 0 && (values_weight(at->type) == 0 || !may_fit(pf, at->type)))
            continue;
        int bestk = -1, bestok = -1;
        for (size_t k = 0; k < NCONVS; k++) {
            if (CONVS[k].type != at->type)
                continue;
            int ok = n ? count_fit(m, at, conv[CONVS[k].filter], n, NULL) : 0;
            if (ok < 0)
                return ok;
            if (ok > bestok) {
                bestok = ok;
                bestk = (int)k;
            }
        }
        if (bestk < 0)
            continue;
        cd.conv = bestk;
        cd.fit = n ? (double)bestok / (double)n : 0;
        cd.conf = confidence(cd.name, cd.fit, at->type, n > 0);
        if (cd.conf < SL_SUGGEST_MIN_CONFIDENCE)
            continue;
        if (cd.name > 0 && !(cd.name_why = sl_arena_strdup(m->out, why)))
            return SL_ERR_NOMEM;
        if (n == 0)
            cd.values_why = "no values in the sample";
        else if (at->type != SL_TYPE_TEXT || bestok < (int)n)
            cd.values_why = pct_text(m->out, (size_t)bestok, n,
                                     at->type == SL_TYPE_TEXT ? "fit" : CONVS[bestk].what);
        if (n && !cd.values_why && at->type != SL_TYPE_TEXT)
            return SL_ERR_NOMEM;
        if (cand_add(cs, &cd))
            return SL_ERR_NOMEM;
    }
    return 0;
}

/* ---- the result ------------------------------------------------------------- */

/* Whether col can stand as a field name in a template: letters, digits, '_',
 * '.' and non-ASCII, not starting with a digit, not "row". */
static bool plain_field(const char *col)
{
    unsigned char c0 = (unsigned char)col[0];
    if (!(c0 == '_' || (c0 >= 'a' && c0 <= 'z') || (c0 >= 'A' && c0 <= 'Z') || c0 >= 0x80))
        return false;
    for (const unsigned char *p = (const unsigned char *)col; *p; p++)
        if (!(*p == '_' || *p == '.' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || *p >= 0x80))
            return false;
    return strcmp(col, "row") != 0 && col[strlen(col) - 1] != '.';
}

/* The mapping entry reading col through filter (NULL: a column copy). */
static const char *mapping_text(struct sl_arena *a, const char *col, const char *filter)
{
    if (!filter && !strstr(col, "{{"))
        return col;
    struct sl_buf b = SL_BUF_INIT;
    sl_buf_puts(&b, "{{ ");
    if (plain_field(col)) {
        sl_buf_puts(&b, col);
    } else {
        sl_buf_puts(&b, "row['");
        for (const char *p = col; *p; p++) {
            if (*p == '\'' || *p == '\\')
                sl_buf_putc(&b, '\\');
            sl_buf_putc(&b, *p);
        }
        sl_buf_puts(&b, "']");
    }
    if (filter) {
        sl_buf_puts(&b, " | ");
        sl_buf_puts(&b, filter);
    }
    int rc = sl_buf_puts(&b, " }}");
    const char *s = rc ? NULL : sl_arena_strdup(a, b.data);
    sl_buf_cleanup(&b);
    return s;
}

/* Whether mapping compiles as a template. */
static bool compiles(const char *mapping)
{
    struct sl_refs refs = {0};
    char err[256];
    struct sl_template *tpl = sl_template_compile(mapping, &refs, err, sizeof(err));
    bool ok = tpl != NULL;
    sl_template_destroy(tpl);
    sl_refs_cleanup(&refs);
    return ok;
}

/* Fills it's column, filter and mapping for conv (falls back to a column
 * copy should a template not compile). 0 or SL_ERR_NOMEM. */
static int set_mapping(struct sl_arena *a, struct sl_suggestion *it, const char *col, int conv)
{
    it->column = col;
    it->filter = conv >= 0 ? FILTERS[CONVS[conv].filter] : NULL;
    if (!(it->mapping = mapping_text(a, col, it->filter)))
        return SL_ERR_NOMEM;
    if (it->filter && !compiles(it->mapping)) {
        it->filter = NULL;
        if (!(it->mapping = mapping_text(a, col, NULL)))
            return SL_ERR_NOMEM;
    }
    return 0;
}

static double round2(double v)
{
    return round(v * 100.0) / 100.0;
}

static void add_reason(struct sl_suggestion *it, const char *r)
{
    if (r && it->nreasons < SL_SUGGEST_MAX_REASONS)
        it->reasons[it->nreasons++] = r;
}

static int cmp_cand(const void *x, const void *y)
{
    const struct cand *p = x, *q = y;
    if (p->conf != q->conf)
        return p->conf > q->conf ? -1 : 1;
    if (p->required != q->required)
        return p->required ? -1 : 1;
    if (p->a != q->a)
        return p->a < q->a ? -1 : 1;
    return p->c < q->c ? -1 : p->c > q->c;
}

/* Sort order of the items: required first, then confidence, then target
 * order (kept in rank). */
struct ranked {
    struct sl_suggestion it;
    size_t rank;
};

static int cmp_item(const void *x, const void *y)
{
    const struct ranked *p = x, *q = y;
    if (p->it.required != q->it.required)
        return p->it.required ? -1 : 1;
    if (p->it.confidence != q->it.confidence)
        return p->it.confidence > q->it.confidence ? -1 : 1;
    return p->rank < q->rank ? -1 : p->rank > q->rank;
}

static int sort_items(struct sl_suggest_result *res)
{
    struct ranked *r = calloc(res->nitems + 1, sizeof(*r));
    if (!r)
        return SL_ERR_NOMEM;
    for (size_t i = 0; i < res->nitems; i++) {
        r[i].it = res->items[i];
        r[i].rank = i;
    }
    qsort(r, res->nitems, sizeof(*r), cmp_item);
    for (size_t i = 0; i < res->nitems; i++)
        res->items[i] = r[i].it;
    free(r);
    return 0;
}

/* The job's attributes matched to the columns, one to one. */
static int match_job(struct match *m, struct cands *cs, struct sl_suggest_result *res)
{
    const struct sl_job *job = m->job;
    size_t ncols = m->sg->ncols;
    struct sl_arena *a = &res->arena;
    long *col_of = malloc((job->nattrs + 1) * sizeof(*col_of));
    long *attr_of = malloc((ncols + 1) * sizeof(*attr_of));
    size_t *cand_of = malloc((job->nattrs + 1) * sizeof(*cand_of));
    res->items = sl_arena_calloc(a, job->nattrs + 1, sizeof(*res->items));
    res->unmapped = sl_arena_calloc(a, job->nattrs + 1, sizeof(*res->unmapped));
    res->unmatched = sl_arena_calloc(a, ncols + 1, sizeof(*res->unmatched));
    res->mapping = json_object();
    int rc = SL_ERR_NOMEM;
    if (!col_of || !attr_of || !cand_of || !res->items || !res->unmapped || !res->unmatched ||
        !res->mapping)
        goto out;
    for (size_t i = 0; i < job->nattrs; i++)
        col_of[i] = -1;
    for (size_t i = 0; i < ncols; i++)
        attr_of[i] = -1;
    /* greedy: the most confident pair first; of equally confident ones a
     * required attribute's, then in target and column order */
    qsort(cs->v, cs->n, sizeof(*cs->v), cmp_cand);
    for (size_t i = 0; i < cs->n; i++) {
        const struct cand *cd = &cs->v[i];
        if (col_of[cd->a] >= 0 || attr_of[cd->c] >= 0)
            continue;
        col_of[cd->a] = (long)cd->c;
        attr_of[cd->c] = (long)cd->a;
        cand_of[cd->a] = i;
    }
    for (size_t i = 0; i < job->nattrs; i++) {
        const struct sl_attr *at = &job->attrs[i];
        if (col_of[i] < 0) {
            res->unmapped[res->nunmapped].name = at->name;
            res->unmapped[res->nunmapped++].required = at->required;
            continue;
        }
        const struct cand *cd = &cs->v[cand_of[i]];
        struct sl_suggestion *it = &res->items[res->nitems++];
        it->attribute = at->name;
        it->type = at->type;
        it->required = at->required;
        it->confidence = round2(cd->conf);
        if (set_mapping(a, it, m->sg->cols[cd->c].name, cd->conv))
            goto out;
        add_reason(it, cd->name_why);
        add_reason(it, cd->values_why);
        if (json_object_set_new(res->mapping, at->name, json_string(it->mapping)))
            goto out;
    }
    for (size_t c = 0; c < ncols; c++) {
        if (attr_of[c] >= 0)
            continue;
        res->unmatched[res->nunmatched].name = m->sg->cols[c].name;
        res->unmatched[res->nunmatched++].profile = m->profs[c].reason;
    }
    rc = sort_items(res);
out:
    free(col_of);
    free(attr_of);
    free(cand_of);
    return rc;
}

/* Without a job: one attribute per column, the key, the options. */
static int propose_target(struct match *m, const char *object, struct sl_suggest_result *res)
{
    size_t ncols = m->sg->ncols;
    struct sl_arena *a = &res->arena;
    char ident[64];
    res->items = sl_arena_calloc(a, ncols + 1, sizeof(*res->items));
    res->unmatched = sl_arena_calloc(a, 1, sizeof(*res->unmatched));
    res->unmapped = sl_arena_calloc(a, 1, sizeof(*res->unmapped));
    json_t *attrs = json_object(), *key = json_array();
    res->mapping = json_object();
    res->target = json_object();
    res->options = json_object();
    if (!res->items || !res->unmatched || !res->unmapped || !attrs || !key || !res->mapping ||
        !res->target || !res->options)
        goto nomem;
    /* the key: the first column with every value present and unique whose
     * name says it identifies, else the first unique one */
    long keycol = -1;
    for (size_t c = 0; c < ncols && keycol < 0; c++)
        if (m->profs[c].unique && id_like(&m->cnames[c]))
            keycol = (long)c;
    for (size_t c = 0; c < ncols && keycol < 0; c++)
        if (m->profs[c].unique)
            keycol = (long)c;
    for (size_t c = 0; c < ncols; c++) {
        const struct prof *pf = &m->profs[c];
        struct sl_suggestion *it = &res->items[res->nitems++];
        /* a unique identifier: "_2", "_3" for names already taken */
        sl_suggest_ident(m->sg->cols[c].name, ident, sizeof(ident));
        char *name = sl_arena_strdup(a, ident);
        for (int k = 2; name && json_object_get(attrs, name); k++) {
            char suffix[16];
            int sl = snprintf(suffix, sizeof(suffix), "_%d", k);
            name = sl_arena_printf(a, "%.*s%s", (int)(63 - sl), ident, suffix);
        }
        if (!name)
            goto nomem;
        it->attribute = name;
        it->type = pf->type;
        it->required = pf->nonempty > 0 && pf->nonempty == m->sg->nrows;
        it->confidence = round2(pf->share);
        if (set_mapping(a, it, m->sg->cols[c].name, pf->type == SL_TYPE_TEXT ? -1 : pf->conv))
            goto nomem;
        add_reason(it, pf->reason);
        if ((long)c == keycol)
            add_reason(it, "key: a value in every row, none twice");
        json_t *def = json_pack("{s:s}", "type", sl_type_name(pf->type));
        if (!def || json_object_set_new(attrs, name, def))
            goto nomem;
        if (it->required && json_object_set_new(def, "required", json_true()))
            goto nomem;
        if (pf->type == SL_TYPE_DECIMAL &&
            json_object_set_new(def, "scale", json_integer(pf->dscale)))
            goto nomem;
        if (pf->type == SL_TYPE_ENUM) {
            json_t *vals = json_array();
            if (!vals || json_object_set_new(def, "values", vals))
                goto nomem;
            for (size_t i = 0; i < pf->nenum; i++)
                if (json_array_append_new(vals, json_string(pf->enumv[i])))
                    goto nomem;
        }
        if ((long)c == keycol && json_array_append_new(key, json_string(name)))
            goto nomem;
        if (json_object_set_new(res->mapping, name, json_string(it->mapping)))
            goto nomem;
    }
    sl_suggest_ident(object && object[0] ? object : "records", ident, sizeof(ident));
    if (json_object_set_new(res->target, "object", json_string(ident)))
        goto nomem;
    if (json_array_size(key)) {
        if (json_object_set_new(res->target, "key", key))
            goto nomem;
    } else {
        json_decref(key);
    }
    key = NULL;
    if (json_object_set_new(res->target, "attributes", attrs))
        goto nomem;
    attrs = NULL;
    /* JOBS.md's defaults written out; no key: rows are appended */
    json_t *opts =
        json_pack("{s:b,s:s,s:b,s:s}", "allow_create", 1, "sync", keycol >= 0 ? "upsert" : "append",
                  "skip_unchanged", 1, "duplicates", "reject");
    if (!opts || json_object_update(res->options, opts)) {
        json_decref(opts);
        goto nomem;
    }
    json_decref(opts);
    return sort_items(res);
nomem:
    json_decref(attrs);
    json_decref(key);
    return SL_ERR_NOMEM;
}

/* Loads the proposed job: every template it proposes must compile. */
static int verify(const struct sl_suggest_result *res, const struct sl_job *job, char *errbuf,
                  size_t errsz)
{
    json_t *doc;
    if (job) {
        doc = json_deep_copy(job->doc);
    } else {
        doc = json_pack("{s:s,s:{s:s}}", "name", "suggest", "source", "url", "sample.csv");
        if (doc && (json_object_set(doc, "target", res->target) ||
                    json_object_set(doc, "options", res->options)))
            goto nomem;
    }
    json_t *map = json_deep_copy(res->mapping);
    if (!doc || !map || json_object_set_new(doc, "mapping", map))
        goto nomem;
    /* an attribute that must have an entry and got none: a stand-in, the
     * check is about the proposed entries */
    for (size_t i = 0; job && i < job->nattrs; i++) {
        const struct sl_attr *at = &job->attrs[i];
        if (!json_object_get(map, at->name) && (at->required || json_object_size(map) == 0) &&
            json_object_set_new(map, at->name, json_string(at->name)))
            goto nomem;
    }
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (!text)
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    char msg[512] = "";
    struct sl_job *loaded =
        sl_job_load_json(text, strlen(text), job ? job->dir : NULL, msg, sizeof(msg));
    free(text);
    if (!loaded)
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "the proposed job does not load: %s", msg);
    sl_job_destroy(loaded);
    return 0;
nomem:
    json_decref(doc);
    return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
}

static void match_cleanup(struct match *m)
{
    for (int f = 0; f < NFILTERS; f++)
        sl_template_destroy(m->tpl[f]);
    sl_refs_cleanup(&m->refs);
    sl_arena_cleanup(&m->scratch);
    free(m->anames);
    free(m->cnames);
    free(m->profs);
}

struct sl_suggest_result *sl_suggest_match(const struct sl_suggest *sg, const struct sl_job *job,
                                           const char *object, char *errbuf, size_t errsz)
{
    struct match m = {.sg = sg, .job = job};
    struct cands cs = {0};
    struct sl_suggest_result *res = calloc(1, sizeof(*res));
    int rc = SL_ERR_NOMEM;
    sl_arena_init(&m.scratch);
    if (!res)
        goto fail;
    sl_arena_init(&res->arena);
    m.out = &res->arena;
    res->rows = sg->nrows;
    res->columns = sg->ncols;
    for (int t = 0; t <= SL_TYPE_ENUM; t++) {
        m.plain[t].type = (enum sl_type)t;
        m.plain[t].min_length = m.plain[t].max_length = -1;
        m.plain[t].scale = -1;
    }
    m.phone_de = m.plain[SL_TYPE_PHONE];
    memcpy(m.phone_de.region, "DE", 3);
    for (int f = 1; f < NFILTERS; f++) {
        char src[96], err[256] = "";
        snprintf(src, sizeof(src), "{{ v | %s }}", FILTERS[f]);
        if (!(m.tpl[f] = sl_template_compile(src, &m.refs, err, sizeof(err)))) {
            rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID, "filter %s: %s", FILTERS[f], err);
            goto fail;
        }
    }
    size_t nattrs = job ? job->nattrs : 0;
    m.anames = calloc(nattrs + 1, sizeof(*m.anames));
    m.cnames = calloc(sg->ncols + 1, sizeof(*m.cnames));
    m.profs = calloc(sg->ncols + 1, sizeof(*m.profs));
    if (!m.anames || !m.cnames || !m.profs)
        goto nomem;
    for (size_t i = 0; i < nattrs; i++)
        name_parse(job->attrs[i].name, &m.anames[i], true);
    for (size_t c = 0; c < sg->ncols; c++) {
        name_parse(sg->cols[c].name, &m.cnames[c], true);
        if (column_pass(&m, c, &cs))
            goto nomem;
        sl_arena_reset(&m.scratch);
    }
    if (job ? match_job(&m, &cs, res) : propose_target(&m, object, res))
        goto nomem;
    if (res->nitems && (rc = verify(res, job, errbuf, errsz)))
        goto fail;
    free(cs.v);
    match_cleanup(&m);
    return res;
nomem:
    rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
fail:
    (void)rc;
    free(cs.v);
    match_cleanup(&m);
    sl_suggest_result_destroy(res);
    return NULL;
}

void sl_suggest_result_destroy(struct sl_suggest_result *res)
{
    if (!res)
        return;
    json_decref(res->target);
    json_decref(res->options);
    json_decref(res->mapping);
    sl_arena_cleanup(&res->arena);
    free(res);
}

json_t *sl_suggest_result_json(const struct sl_suggest_result *res)
{
    json_t *items = json_array(), *unmatched = json_array(), *unmapped = json_array();
    if (!items || !unmatched || !unmapped)
        goto fail;
    for (size_t i = 0; i < res->nitems; i++) {
        const struct sl_suggestion *it = &res->items[i];
        json_t *reasons = json_array();
        for (size_t k = 0; reasons && k < it->nreasons; k++)
            if (json_array_append_new(reasons, json_string(it->reasons[k])))
                json_decref(reasons), reasons = NULL;
        json_t *o =
            json_pack("{s:s,s:s,s:b,s:s,s:s,s:f,s:o}", "attribute", it->attribute, "type",
                      sl_type_name(it->type), "required", it->required, "column", it->column,
                      "mapping", it->mapping, "confidence", it->confidence, "reasons", reasons);
        if (!o || json_array_append_new(items, o))
            goto fail;
    }
    for (size_t i = 0; i < res->nunmatched; i++)
        if (json_array_append_new(unmatched, json_string(res->unmatched[i].name)))
            goto fail;
    for (size_t i = 0; i < res->nunmapped; i++)
        if (json_array_append_new(unmapped, json_string(res->unmapped[i].name)))
            goto fail;
    json_t *doc = json_pack("{s:I,s:I,s:o,s:o,s:o}", "rows", (json_int_t)res->rows, "columns",
                            (json_int_t)res->columns, "suggestions", items, "unmatched_columns",
                            unmatched, "unmapped_attributes", unmapped);
    if (doc && res->target && json_object_set(doc, "target", res->target)) {
        json_decref(doc);
        return NULL;
    }
    return doc;
fail:
    json_decref(items);
    json_decref(unmatched);
    json_decref(unmapped);
    return NULL;
}

json_t *sl_suggest_job_doc(const struct sl_suggest_result *res, const json_t *base)
{
    json_t *doc = json_deep_copy(base), *map = json_object();
    if (!doc || !map)
        goto fail;
    if (res->target && !json_object_get(doc, "target") &&
        json_object_set(doc, "target", res->target))
        goto fail;
    /* in target order: the proposal, else the job's own entry; a note says
     * where a proposed one came from */
    json_t *attrs = json_object_get(json_object_get(doc, "target"), "attributes");
    json_t *old = json_object_get(base, "mapping");
    const char *name;
    json_t *def;
    json_object_foreach(attrs, name, def)
    {
        const struct sl_suggestion *it = NULL;
        for (size_t i = 0; i < res->nitems && !it; i++)
            if (!strcmp(res->items[i].attribute, name))
                it = &res->items[i];
        json_t *entry = NULL;
        if (it) {
            struct sl_buf note = SL_BUF_INIT;
            int rc = sl_buf_printf(&note, "suggested (confidence %.2f)", it->confidence);
            for (size_t k = 0; k < it->nreasons && !rc; k++)
                rc = sl_buf_printf(&note, "%s%s", k ? "; " : ": ", it->reasons[k]);
            if (!rc)
                entry = json_pack("{s:s,s:s}", "value", it->mapping, "note", note.data);
            sl_buf_cleanup(&note);
        } else if (json_is_object(old) && json_object_get(old, name)) {
            entry = json_deep_copy(json_object_get(old, name));
        } else {
            continue;
        }
        if (!entry || json_object_set_new(map, name, entry))
            goto fail;
    }
    /* the mapping where it was, else after the target */
    if (json_object_set_new(doc, "mapping", map)) {
        map = NULL;
        goto fail;
    }
    if (res->options && !json_object_get(doc, "options") &&
        json_object_set(doc, "options", res->options))
        goto fail;
    return doc;
fail:
    json_decref(map);
    json_decref(doc);
    return NULL;
}

/* ---- encoding --------------------------------------------------------------- */

#define ENC_SCAN_MAX (8u << 20)

enum sl_encoding sl_suggest_encoding(int fd)
{
    enum { BLOCK = 65536 };
    unsigned char *buf = malloc(BLOCK + 4);
    size_t carry = 0;
    off_t off = 0;
    bool invalid = false, c1 = false, undefined = false;
    if (!buf)
        return SL_ENC_UTF8;
    while (off < (off_t)ENC_SCAN_MAX) {
        ssize_t got = pread(fd, buf + carry, BLOCK, off);
        if (got <= 0) {
            invalid |= carry > 0; /* a character cut off by the end */
            break;
        }
        if (off == 0 &&
            ((got >= 3 && !memcmp(buf, "\xef\xbb\xbf", 3)) ||
             (got >= 2 && (!memcmp(buf, "\xff\xfe", 2) || !memcmp(buf, "\xfe\xff", 2))))) {
            free(buf);
            return SL_ENC_UTF8; /* the reader follows the BOM */
        }
        off += got;
        size_t len = carry + (size_t)got;
        for (size_t i = carry; i < len; i++) {
            if (buf[i] >= 0x80 && buf[i] <= 0x9f) {
                c1 = true;
                undefined |= buf[i] == 0x81 || buf[i] == 0x8d || buf[i] == 0x8f || buf[i] == 0x90 ||
                             buf[i] == 0x9d;
            }
        }
        /* a character cut by the block's end waits for the next block */
        size_t tail = 0;
        for (size_t k = 1; k <= 3 && k <= len; k++) {
            unsigned char b = buf[len - k];
            if ((b & 0xc0) == 0x80)
                continue;
            size_t need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
            if (need > k)
                tail = k;
            break;
        }
        if (!invalid && !sl_utf8_valid((const char *)buf, len - tail))
            invalid = true;
        memmove(buf, buf + len - tail, tail);
        carry = tail;
    }
    free(buf);
    if (!invalid)
        return SL_ENC_UTF8;
    return c1 && !undefined ? SL_ENC_WINDOWS_1252 : SL_ENC_LATIN1;
}
