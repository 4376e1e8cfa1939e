/* jsonval.c — see jsonval.h. */
#include "jsonval.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "flow.h"

json_t *jsonval_strn(const char *s, size_t n)
{
    if (!s)
        return json_string("");
    json_t *j = json_stringn(s, n);
    if (!j) { /* bytes that are not UTF-8: Latin-1 them as browsers do */
        bytes u = {0};
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)s[i];
            unsigned char t[2] = {(unsigned char)(0xc0 | c >> 6), (unsigned char)(0x80 | (c & 0x3f))};
            if (bytes_append(&u, c < 0x80 ? (const void *)&s[i] : (const void *)t, c < 0x80 ? 1 : 2) < 0)
                break;
        }
        j = json_stringn(u.p ? u.p : "", u.len);
        bytes_free(&u);
    }
    return j;
}

json_t *jsonval_str(const char *s)
{
    return jsonval_strn(s, s ? strlen(s) : 0);
}

json_t *jsonval_base64(const char *p, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    if (!out)
        return NULL;
    int k = EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)p, (int)n);
    json_t *j = json_stringn(out, (size_t)(k < 0 ? 0 : k));
    free(out);
    return j;
}
