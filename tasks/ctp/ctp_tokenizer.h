/* ctp_tokenizer.h - a WordPiece-style vocabulary learned from training captions, BERT's
 * conventions: lower-casing, whitespace and punctuation split (each punctuation character is a
 * word), word pieces after the first marked "##", greedy longest-match-first encoding, special
 * tokens [PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4. The vocabulary is a list of pieces, one a
 * line (BERT's vocab.txt), saved with the model.
 *
 * Learning (WordPiece as HuggingFace's trainer does it): words start as characters (the first
 * plain, the rest "##c"); while the vocabulary is below its size, the adjacent pair with the
 * highest count(ab) / (count(a) count(b)) over the word counts is merged. */
#ifndef POLYAK_CTP_TOKENIZER_H
#define POLYAK_CTP_TOKENIZER_H
#include <stddef.h>
#include <stdint.h>

#include "status.h"

enum { CTP_PAD = 0, CTP_UNK = 1, CTP_CLS = 2, CTP_SEP = 3, CTP_MASK = 4 };

typedef struct ctp_vocab {
    int n;
    char **piece; /* (n) */
    /* lookup: open addressing over piece strings */
    int *slot;
    int nslots;
} ctp_vocab;

/* Learns a vocabulary of at most `size` pieces (specials and every character seen included,
 * so size may be exceeded by the alphabet) from n texts. */
pk_status ctp_vocab_learn(const char *const *texts, int n, int size, ctp_vocab *v);

/* Builds a vocabulary from its text (one piece a line, the specials first). */
pk_status ctp_vocab_parse(const char *name, const char *text, ctp_vocab *v);

/* The vocabulary as text (one piece a line, '\n' after each); malloc'd, *len its length. */
char *ctp_vocab_text(const ctp_vocab *v, size_t *len);

/* Frees the vocabulary; accepts an empty one. */
void ctp_vocab_free(ctp_vocab *v);

/* Id of a piece, -1 when absent. */
int ctp_vocab_id(const ctp_vocab *v, const char *piece);

/* Encodes [CLS] pieces... [SEP] into ids (max_len, padded with [PAD], truncated keeping [SEP]
 * last); returns the number of real tokens. */
int ctp_encode(const ctp_vocab *v, const char *text, int max_len, int32_t *ids);

/* Decodes ids back to text: specials dropped, "##" pieces glued to the previous one, words
 * separated by one space (so decode(encode(t)) is t lower-cased with punctuation spaced). */
char *ctp_decode(const ctp_vocab *v, const int32_t *ids, int n);

/* The normalised text decode(encode(text)) gives when every piece is known: lower-cased words
 * and punctuation separated by single spaces; malloc'd. */
char *ctp_normalize(const char *text);

#endif
