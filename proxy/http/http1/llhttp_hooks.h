/* The callbacks of skiff's HTTP/1 codec (http1_codec.cc) as plain C
 * functions, for the llhttp parser to call directly (llhttp_unity.c says
 * why). They are the same functions as the codec's llhttp_settings_t holds,
 * with the same arguments and return values (0, HPE_PAUSED, HPE_USER, or -1
 * from on_headers_complete). */
#ifndef SKIFF_PROXY_HTTP_HTTP1_LLHTTP_HOOKS_H_
#define SKIFF_PROXY_HTTP_HTTP1_LLHTTP_HOOKS_H_

#include <llhttp.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

int skiff_http1_on_message_begin(llhttp_t* p);
int skiff_http1_on_url(llhttp_t* p, const char* at, size_t len);
int skiff_http1_on_header_field(llhttp_t* p, const char* at, size_t len);
int skiff_http1_on_header_value(llhttp_t* p, const char* at, size_t len);
int skiff_http1_on_header_value_complete(llhttp_t* p);
int skiff_http1_on_headers_complete(llhttp_t* p);
int skiff_http1_on_body(llhttp_t* p, const char* at, size_t len);
int skiff_http1_on_message_complete(llhttp_t* p);

#ifdef __cplusplus
}
#endif

#endif /* SKIFF_PROXY_HTTP_HTTP1_LLHTTP_HOOKS_H_ */
