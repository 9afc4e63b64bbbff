// libxmlsec1 (OpenSSL back end) and libxml2. The macros below are the ones
// `pkg-config --cflags xmlsec1-openssl` gives: they select the crypto back end and fix the
// ABI (XMLSEC_NO_SIZE_T makes xmlSecSize an unsigned int). SwiftPM drops -D flags from
// pkg-config (it warns "prohibited flag(s)") and keeps only the -I paths, so they are set here.
#pragma once
#ifndef XMLSEC_CRYPTO_OPENSSL
#define XMLSEC_CRYPTO_OPENSSL 1
#endif
#ifndef XMLSEC_NO_SIZE_T
#define XMLSEC_NO_SIZE_T
#endif
#ifndef XMLSEC_NO_GOST
#define XMLSEC_NO_GOST 1
#endif
#ifndef XMLSEC_NO_GOST2012
#define XMLSEC_NO_GOST2012 1
#endif
#ifndef XMLSEC_NO_CRYPTO_DYNAMIC_LOADING
#define XMLSEC_NO_CRYPTO_DYNAMIC_LOADING 1
#endif
#ifndef XMLSEC_OPENSSL3_ENGINES
#define XMLSEC_OPENSSL3_ENGINES 1
#endif
#ifndef __XMLSEC_FUNCTION__
#define __XMLSEC_FUNCTION__ __func__
#endif
// libxml2's ICU converter fields would pull in the system ICU headers, which clash with the
// toolchain's own ICU module under Foundation; nothing here touches those fields.
#include <libxml/xmlversion.h>
#undef LIBXML_ICU_ENABLED
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <xmlsec/xmlsec.h>
#include <xmlsec/xmltree.h>
#include <xmlsec/xmldsig.h>
#include <xmlsec/templates.h>
#include <xmlsec/errors.h>
#include <xmlsec/openssl/app.h>
#include <xmlsec/openssl/crypto.h>

// One-line wrappers for macros the importer drops.
static inline int vouch_xmlsec_check_version(void) { return xmlSecCheckVersion(); }
static inline void vouch_xml_free(void *p) { xmlFree(p); }
