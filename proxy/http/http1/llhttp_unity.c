/* llhttp, built as one translation unit from Debian's generated sources
 * (/usr/share/llhttp; CMakeLists.txt), with its callback hooks bound to
 * skiff's HTTP/1 codec. Nothing in llhttp's sources is changed.
 *
 * The parser (llhttp.c) calls a hook per event: llhttp__on_url,
 * llhttp__on_header_value, ... api.c defines each hook as a lookup of the
 * callback in the parser's llhttp_settings_t, then an indirect call, and
 * http.c defines three more (llhttp__before_headers_complete, ...). Built
 * apart, every event was a call to a hook that made the real call, about 60
 * per proxied request, 19 of them for callbacks skiff leaves unset
 * (on_header_field_complete, on_version, on_status, ...). Here the hooks are
 * defined in the parser's own unit, always inlined: a callback skiff sets
 * is one direct call (llhttp_hooks.h), one it leaves unset costs nothing,
 * and http.c's checks are inlined too.
 *
 * So the parser calls the codec's callbacks whatever llhttp_settings_t it
 * was given: this unit serves skiff's codec only. The codec still passes
 * its settings to llhttp_init, holding the same functions, for the API
 * calls that read them (llhttp_finish calls on_message_complete).
 *
 * llhttp.c declares the hooks with `const unsigned char*` spans, and api.c
 * and http.c define them with `const char*`, which one unit may not hold:
 * their definitions are renamed on the way in (api.c's are then unused). */
#include "llhttp.c"

#define llhttp__on_message_begin llhttp__lib_on_message_begin
#define llhttp__on_url llhttp__lib_on_url
#define llhttp__on_url_complete llhttp__lib_on_url_complete
#define llhttp__on_status llhttp__lib_on_status
#define llhttp__on_status_complete llhttp__lib_on_status_complete
#define llhttp__on_method llhttp__lib_on_method
#define llhttp__on_method_complete llhttp__lib_on_method_complete
#define llhttp__on_version llhttp__lib_on_version
#define llhttp__on_version_complete llhttp__lib_on_version_complete
#define llhttp__on_header_field llhttp__lib_on_header_field
#define llhttp__on_header_field_complete llhttp__lib_on_header_field_complete
#define llhttp__on_header_value llhttp__lib_on_header_value
#define llhttp__on_header_value_complete llhttp__lib_on_header_value_complete
#define llhttp__on_headers_complete llhttp__lib_on_headers_complete
#define llhttp__on_message_complete llhttp__lib_on_message_complete
#define llhttp__on_body llhttp__lib_on_body
#define llhttp__on_chunk_header llhttp__lib_on_chunk_header
#define llhttp__on_chunk_extension_name llhttp__lib_on_chunk_extension_name
#define llhttp__on_chunk_extension_name_complete llhttp__lib_on_chunk_extension_name_complete
#define llhttp__on_chunk_extension_value llhttp__lib_on_chunk_extension_value
#define llhttp__on_chunk_extension_value_complete llhttp__lib_on_chunk_extension_value_complete
#define llhttp__on_chunk_complete llhttp__lib_on_chunk_complete
#define llhttp__on_reset llhttp__lib_on_reset
#define llhttp__before_headers_complete llhttp__lib_before_headers_complete
#define llhttp__after_headers_complete llhttp__lib_after_headers_complete
#define llhttp__after_message_complete llhttp__lib_after_message_complete

#include "api.c"

/* http.c's checks, inlined too (each runs once per message, and skiff
 * also calls the last two itself). The declarations carry the attribute to
 * the definitions that follow. */
#define SKIFF_ALWAYS_INLINE __attribute__((always_inline)) inline
SKIFF_ALWAYS_INLINE int llhttp__before_headers_complete(llhttp_t* parser, const char* p,
                                                        const char* endp);
SKIFF_ALWAYS_INLINE int llhttp__after_headers_complete(llhttp_t* parser, const char* p,
                                                       const char* endp);
SKIFF_ALWAYS_INLINE int llhttp__after_message_complete(llhttp_t* parser, const char* p,
                                                       const char* endp);
SKIFF_ALWAYS_INLINE int llhttp_message_needs_eof(const llhttp_t* parser);
SKIFF_ALWAYS_INLINE int llhttp_should_keep_alive(const llhttp_t* parser);
#include "http.c"

#undef llhttp__on_message_begin
#undef llhttp__on_url
#undef llhttp__on_url_complete
#undef llhttp__on_status
#undef llhttp__on_status_complete
#undef llhttp__on_method
#undef llhttp__on_method_complete
#undef llhttp__on_version
#undef llhttp__on_version_complete
#undef llhttp__on_header_field
#undef llhttp__on_header_field_complete
#undef llhttp__on_header_value
#undef llhttp__on_header_value_complete
#undef llhttp__on_headers_complete
#undef llhttp__on_message_complete
#undef llhttp__on_body
#undef llhttp__on_chunk_header
#undef llhttp__on_chunk_extension_name
#undef llhttp__on_chunk_extension_name_complete
#undef llhttp__on_chunk_extension_value
#undef llhttp__on_chunk_extension_value_complete
#undef llhttp__on_chunk_complete
#undef llhttp__on_reset
#undef llhttp__before_headers_complete
#undef llhttp__after_headers_complete
#undef llhttp__after_message_complete

#include "proxy/http/http1/llhttp_hooks.h"

/* External definitions (llhttp.c declared them), inlined at every call. */
#define SKIFF_HOOK(name)                                                                \
  SKIFF_ALWAYS_INLINE int llhttp__##name(llhttp__internal_t* s, const unsigned char* p, \
                                         const unsigned char* endp)

/* What api.c does with a span callback's result: -1 is a user error. */
#define SKIFF_SPAN_RESULT(err, name)                               \
  do {                                                             \
    if ((err) == -1) {                                             \
      llhttp_set_error_reason(s, "Span callback error in " #name); \
      return HPE_USER;                                             \
    }                                                              \
    return (err);                                                  \
  } while (0)

/* The callbacks skiff sets. */
SKIFF_HOOK(on_message_begin) { return skiff_http1_on_message_begin(s); }
SKIFF_HOOK(on_url) {
  int err = skiff_http1_on_url(s, (const char*)p, (size_t)(endp - p));
  SKIFF_SPAN_RESULT(err, on_url);
}
SKIFF_HOOK(on_header_field) {
  int err = skiff_http1_on_header_field(s, (const char*)p, (size_t)(endp - p));
  SKIFF_SPAN_RESULT(err, on_header_field);
}
SKIFF_HOOK(on_header_value) {
  int err = skiff_http1_on_header_value(s, (const char*)p, (size_t)(endp - p));
  SKIFF_SPAN_RESULT(err, on_header_value);
}
SKIFF_HOOK(on_header_value_complete) { return skiff_http1_on_header_value_complete(s); }
SKIFF_HOOK(on_headers_complete) { return skiff_http1_on_headers_complete(s); }
SKIFF_HOOK(on_body) {
  int err = skiff_http1_on_body(s, (const char*)p, (size_t)(endp - p));
  SKIFF_SPAN_RESULT(err, on_body);
}
SKIFF_HOOK(on_message_complete) { return skiff_http1_on_message_complete(s); }

/* The callbacks skiff leaves unset. */
SKIFF_HOOK(on_url_complete) { return 0; }
SKIFF_HOOK(on_status) { return 0; }
SKIFF_HOOK(on_status_complete) { return 0; }
SKIFF_HOOK(on_method) { return 0; }
SKIFF_HOOK(on_method_complete) { return 0; }
SKIFF_HOOK(on_version) { return 0; }
SKIFF_HOOK(on_version_complete) { return 0; }
SKIFF_HOOK(on_header_field_complete) { return 0; }
SKIFF_HOOK(on_chunk_header) { return 0; }
SKIFF_HOOK(on_chunk_extension_name) { return 0; }
SKIFF_HOOK(on_chunk_extension_name_complete) { return 0; }
SKIFF_HOOK(on_chunk_extension_value) { return 0; }
SKIFF_HOOK(on_chunk_extension_value_complete) { return 0; }
SKIFF_HOOK(on_chunk_complete) { return 0; }
SKIFF_HOOK(on_reset) { return 0; }

/* http.c's checks. */
SKIFF_HOOK(before_headers_complete) {
  return llhttp__lib_before_headers_complete(s, (const char*)p, (const char*)endp);
}
SKIFF_HOOK(after_headers_complete) {
  return llhttp__lib_after_headers_complete(s, (const char*)p, (const char*)endp);
}
SKIFF_HOOK(after_message_complete) {
  return llhttp__lib_after_message_complete(s, (const char*)p, (const char*)endp);
}
