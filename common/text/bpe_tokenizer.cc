#include "common/text/bpe_tokenizer.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/text/unicode.h"
#include "nlohmann/json.hpp"

namespace lft {

namespace {
// Added tokens of one `normalized` kind, by first byte, longest first, so
// the first hit at a position is the leftmost-longest match.
struct AddedTokenIndex {
  bool any = false;
  std::vector<const AddedToken*> by_byte[256];
};
}  // namespace

struct BpeTokenizer::Model {
  // Vocabulary.
  absl::flat_hash_map<std::string, int32_t> token_to_id;
  std::vector<std::string> id_to_token;  // "" for holes
  // Merges: (left id, right id) -> (rank, merged id).
  absl::flat_hash_map<uint64_t, std::pair<int32_t, int32_t>> merges;
  // Byte-level alphabet.
  std::string byte_to_char[256];  // UTF-8 of the printable stand-in
  int32_t byte_to_id[256];        // vocab id of that character, -1 if absent
  absl::flat_hash_map<char32_t, uint8_t> char_to_byte;
  // Options.
  bool nfc = false;
  bool add_prefix_space = false;
  bool use_regex = true;
  bool ignore_merges = false;
  int32_t unk_id = -1;
  // Added tokens.
  std::vector<AddedToken> added;
  absl::flat_hash_map<int32_t, size_t> added_by_id;  // id -> index in added
  AddedTokenIndex raw_index;                         // normalized == false
  AddedTokenIndex normalized_index;                  // normalized == true
  int32_t vocab_size = 0;
};

namespace {

constexpr size_t kMaxCachedWordBytes = 256;
constexpr size_t kMaxCacheEntries = 1 << 16;

uint64_t PairKey(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) |
         static_cast<uint32_t>(b);
}

}  // namespace

char32_t ByteToUnicode(int b) {
  auto printable = [](int x) {
    return (x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) ||
           (x >= 0xAE && x <= 0xFF);
  };
  if (printable(b)) return static_cast<char32_t>(b);
  int n = 0;
  for (int x = 0; x < b; ++x) {
    if (!printable(x)) ++n;
  }
  return static_cast<char32_t>(256 + n);
}

namespace {

enum CharClass { kSpace = 0, kLetter = 1, kNumber = 2, kOther = 3 };

// Classes of ASCII characters, so the common case needs no table search.
struct AsciiClasses {
  CharClass cls[128];
  AsciiClasses() {
    for (int c = 0; c < 128; ++c) {
      cls[c] = IsWhitespace(c) ? kSpace
               : IsLetter(c)   ? kLetter
               : IsNumber(c)   ? kNumber
                               : kOther;
    }
  }
};

CharClass Classify(char32_t cp) {
  static const AsciiClasses* const ascii = new AsciiClasses();
  if (cp < 128) return ascii->cls[cp];
  if (IsWhitespace(cp)) return kSpace;
  if (IsLetter(cp)) return kLetter;
  if (IsNumber(cp)) return kNumber;
  return kOther;
}

bool IsWordChar(char32_t cp) {
  return IsLetter(cp) || IsNumber(cp) || cp == '_';
}

// Code point before byte offset `end` of valid-ish UTF-8, and its start.
char32_t PrevCodepoint(absl::string_view s, size_t end, size_t* start) {
  size_t b = end - 1;
  while (b > 0 && end - b < 4 &&
         (static_cast<unsigned char>(s[b]) & 0xC0) == 0x80) {
    --b;
  }
  size_t p = b;
  char32_t cp = DecodeUtf8(s, &p);
  if (p != end) {  // not a clean sequence: treat the last byte alone
    b = end - 1;
    p = b;
    cp = DecodeUtf8(s, &p);
  }
  *start = b;
  return cp;
}

struct Segment {
  size_t begin;
  size_t end;
  int32_t id;  // -1: plain text
};

void BuildAddedTokenIndex(const std::vector<AddedToken>& added, bool normalized,
                          AddedTokenIndex* index) {
  for (const AddedToken& t : added) {
    if (t.normalized != normalized || t.content.empty()) continue;
    index->by_byte[static_cast<unsigned char>(t.content[0])].push_back(&t);
    index->any = true;
  }
  for (auto& list : index->by_byte) {
    std::stable_sort(list.begin(), list.end(),
                     [](const AddedToken* a, const AddedToken* b) {
                       return a->content.size() > b->content.size();
                     });
  }
}

// HF AddedVocabulary::find_matches over the tokens of `index`:
// leftmost-longest non-overlapping matches, then the single_word filter and
// lstrip/rstrip widening.
std::vector<Segment> SplitAddedTokens(const AddedTokenIndex& index,
                                      absl::string_view text) {
  std::vector<Segment> out;
  if (!index.any || text.empty()) {
    out.push_back({0, text.size(), -1});
    return out;
  }
  struct Match {
    size_t begin, end;
    const AddedToken* token;
  };
  const auto& by_byte = index.by_byte;
  std::vector<Match> matches;
  for (size_t pos = 0; pos < text.size();) {
    const auto& list = by_byte[static_cast<unsigned char>(text[pos])];
    const AddedToken* best = nullptr;
    for (const AddedToken* t : list) {
      const std::string& c = t->content;
      if (c.size() > text.size() - pos) continue;
      if (c.size() > 1 && text[pos + 1] != c[1]) continue;
      if (std::memcmp(text.data() + pos, c.data(), c.size()) == 0) {
        best = t;
        break;
      }
    }
    if (best == nullptr) {
      ++pos;
      continue;
    }
    matches.push_back({pos, pos + best->content.size(), best});
    pos += best->content.size();
  }
  size_t start_offset = 0;
  for (const Match& m : matches) {
    size_t start = m.begin, stop = m.end;
    const AddedToken& t = *m.token;
    if (t.single_word) {
      bool start_ok = true, stop_ok = true;
      if (start > 0) {
        size_t b;
        start_ok = !IsWordChar(PrevCodepoint(text, start, &b));
      }
      if (stop < text.size()) {
        size_t p = stop;
        stop_ok = !IsWordChar(DecodeUtf8(text, &p));
      }
      if (!start_ok || !stop_ok) continue;
    }
    if (start < start_offset) continue;  // swallowed by a previous rstrip
    if (t.lstrip) {
      size_t s = start;
      while (s > start_offset) {
        size_t b;
        if (!IsWhitespace(PrevCodepoint(text, s, &b))) break;
        s = b;
      }
      start = s;
    }
    if (t.rstrip) {
      while (stop < text.size()) {
        size_t p = stop;
        if (!IsWhitespace(DecodeUtf8(text, &p))) break;
        stop = p;
      }
    }
    if (start > start_offset) out.push_back({start_offset, start, -1});
    out.push_back({start, stop, t.id});
    start_offset = stop;
  }
  if (start_offset < text.size()) {
    out.push_back({start_offset, text.size(), -1});
  }
  return out;
}

absl::Status ParseNormalizer(const nlohmann::json& j, bool* nfc) {
  if (j.is_null()) return absl::OkStatus();
  std::string type = j.at("type").get<std::string>();
  if (type == "NFC") {
    *nfc = true;
    return absl::OkStatus();
  }
  if (type == "Sequence") {
    for (const auto& n : j.at("normalizers")) {
      LFT_RETURN_IF_ERROR(ParseNormalizer(n, nfc));
    }
    return absl::OkStatus();
  }
  return absl::UnimplementedError(
      absl::StrCat("tokenizer.json: normalizer type \"", type,
                   "\" is not supported (only null, NFC, Sequence of NFC)"));
}

bool GetBool(const nlohmann::json& j, const char* key, bool dflt) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return dflt;
  return it->get<bool>();
}

absl::StatusOr<std::shared_ptr<BpeTokenizer::Model>> ParseModel(
    const nlohmann::json& root) {
  auto m = std::make_shared<BpeTokenizer::Model>();
  LFT_RETURN_IF_ERROR(
      ParseNormalizer(root.value("normalizer", nlohmann::json()), &m->nfc));
  const nlohmann::json& pre = root.at("pre_tokenizer");
  if (pre.is_null() || pre.at("type").get<std::string>() != "ByteLevel") {
    return absl::UnimplementedError(
        "tokenizer.json: pre_tokenizer must be ByteLevel");
  }
  m->add_prefix_space = GetBool(pre, "add_prefix_space", true);
  m->use_regex = GetBool(pre, "use_regex", true);
  auto dec = root.find("decoder");
  if (dec != root.end() && !dec->is_null() &&
      dec->at("type").get<std::string>() != "ByteLevel") {
    return absl::UnimplementedError(
        "tokenizer.json: decoder must be ByteLevel or null");
  }
  const nlohmann::json& model = root.at("model");
  if (model.contains("type") && model.at("type").get<std::string>() != "BPE") {
    return absl::UnimplementedError("tokenizer.json: model.type must be BPE");
  }
  if (model.contains("dropout") && !model.at("dropout").is_null() &&
      model.at("dropout").get<double>() != 0.0) {
    return absl::UnimplementedError(
        "tokenizer.json: BPE dropout is not supported");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(key) && !model.at(key).is_null() &&
        !model.at(key).get<std::string>().empty()) {
      return absl::UnimplementedError(
          absl::StrCat("tokenizer.json: model.", key, " is not supported"));
    }
  }
  m->ignore_merges = GetBool(model, "ignore_merges", false);
  int32_t max_id = -1;
  for (const auto& [token, id_json] : model.at("vocab").items()) {
    int64_t id = id_json.get<int64_t>();
    if (id < 0 || id > (int64_t{1} << 30)) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer.json: model.vocab[\"", token, "\"] = ", id,
                       " is not a valid id"));
    }
    m->token_to_id[token] = static_cast<int32_t>(id);
    max_id = std::max(max_id, static_cast<int32_t>(id));
  }
  auto unk = model.find("unk_token");
  if (unk != model.end() && !unk->is_null()) {
    auto it = m->token_to_id.find(unk->get<std::string>());
    if (it == m->token_to_id.end()) {
      return absl::InvalidArgumentError(
          "tokenizer.json: model.unk_token is not in the vocab");
    }
    m->unk_id = it->second;
  }
  int32_t rank = 0;
  for (const auto& merge : model.at("merges")) {
    std::string a, b;
    if (merge.is_string()) {
      std::string s = merge.get<std::string>();
      size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat("tokenizer.json: merges[", rank, "] = \"", s,
                         "\" is not two tokens separated by one space"));
      }
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (merge.is_array() && merge.size() == 2) {
      a = merge[0].get<std::string>();
      b = merge[1].get<std::string>();
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "tokenizer.json: merges[", rank, "] is neither \"a b\" nor [a, b]"));
    }
    auto ia = m->token_to_id.find(a), ib = m->token_to_id.find(b),
         iab = m->token_to_id.find(a + b);
    if (ia == m->token_to_id.end() || ib == m->token_to_id.end() ||
        iab == m->token_to_id.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer.json: merges[", rank, "] (\"", a, "\", \"", b,
                       "\") uses a token missing from model.vocab"));
    }
    // The first (lowest-rank) occurrence of a pair wins, as in HF.
    m->merges.try_emplace(PairKey(ia->second, ib->second), rank, iab->second);
    ++rank;
  }
  auto added = root.find("added_tokens");
  if (added != root.end() && !added->is_null()) {
    for (const auto& t : *added) {
      AddedToken tok;
      tok.id = t.at("id").get<int32_t>();
      tok.content = t.at("content").get<std::string>();
      tok.single_word = GetBool(t, "single_word", false);
      tok.lstrip = GetBool(t, "lstrip", false);
      tok.rstrip = GetBool(t, "rstrip", false);
      tok.normalized = GetBool(t, "normalized", true);
      tok.special = GetBool(t, "special", false);
      if (tok.id < 0 || tok.id > (1 << 30)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "tokenizer.json: added token \"", tok.content, "\" has bad id"));
      }
      max_id = std::max(max_id, tok.id);
      m->added_by_id[tok.id] = m->added.size();
      m->added.push_back(std::move(tok));
    }
  }
  // The id-to-token table is sized by the largest id: ids far beyond the
  // tokens the file defines (a corrupt or hostile file) would make it huge.
  const int64_t entries =
      static_cast<int64_t>(m->token_to_id.size() + m->added.size());
  if (max_id >= 2 * entries + 1024) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tokenizer.json: token id ", max_id, " is far beyond the ", entries,
        " tokens the file defines (ids must be below 2 x tokens + 1024)"));
  }
  BuildAddedTokenIndex(m->added, false, &m->raw_index);
  BuildAddedTokenIndex(m->added, true, &m->normalized_index);
  m->vocab_size = max_id + 1;
  m->id_to_token.resize(static_cast<size_t>(m->vocab_size));
  for (const auto& [token, id] : m->token_to_id) m->id_to_token[id] = token;
  for (const AddedToken& t : m->added) {
    m->id_to_token[t.id] = t.content;
    m->token_to_id.try_emplace(t.content, t.id);
  }
  for (int b = 0; b < 256; ++b) {
    char32_t c = ByteToUnicode(b);
    m->byte_to_char[b].clear();
    AppendUtf8(c, &m->byte_to_char[b]);
    m->char_to_byte[c] = static_cast<uint8_t>(b);
    auto it = m->token_to_id.find(m->byte_to_char[b]);
    m->byte_to_id[b] = it == m->token_to_id.end() ? -1 : it->second;
  }
  return m;
}

}  // namespace

std::vector<std::pair<size_t, size_t>> SplitGpt2Pretokens(absl::string_view s) {
  std::vector<std::pair<size_t, size_t>> out;
  const size_t n = s.size();
  // Code point and class at byte offset p (p < n); *next = following offset.
  auto at = [&](size_t p, size_t* next) -> char32_t {
    unsigned char c = static_cast<unsigned char>(s[p]);
    if (c < 0x80) {
      *next = p + 1;
      return c;
    }
    *next = p;
    return DecodeUtf8(s, next);
  };
  size_t i = 0;
  while (i < n) {
    size_t next;
    char32_t c = at(i, &next);
    // 's|'t|'re|'ve|'m|'ll|'d
    if (c == '\'' && i + 1 < n) {
      char c1 = s[i + 1];
      if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') {
        out.emplace_back(i, i + 2);
        i += 2;
        continue;
      }
      if (i + 2 < n) {
        char c2 = s[i + 2];
        if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') ||
            (c1 == 'l' && c2 == 'l')) {
          out.emplace_back(i, i + 3);
          i += 3;
          continue;
        }
      }
    }
    // ' ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+'
    size_t body = i;
    char32_t bc = c;
    size_t body_next = next;
    if (c == ' ' && next < n) {
      body = next;
      bc = at(body, &body_next);
    }
    CharClass cls = Classify(bc);
    if (cls == kSpace && body != i) {  // " " + space: no optional-space match
      body = i;
      bc = c;
      body_next = next;
      cls = Classify(c);
    }
    if (cls != kSpace) {
      size_t end = body_next;
      while (end < n) {
        size_t nn;
        char32_t cp = at(end, &nn);
        if (Classify(cp) != cls) break;
        end = nn;
      }
      out.emplace_back(i, end);
      i = end;
      continue;
    }
    // \s+(?!\S)|\s+
    size_t end = next;
    size_t last_start = i;  // start of the last whitespace char in the run
    while (end < n) {
      size_t nn;
      char32_t cp = at(end, &nn);
      if (!IsWhitespace(cp)) break;
      last_start = end;
      end = nn;
    }
    if (end < n && last_start > i) end = last_start;
    out.emplace_back(i, end);
    i = end;
  }
  return out;
}

BpeTokenizer::BpeTokenizer(std::shared_ptr<const Model> model)
    : model_(std::move(model)) {}

absl::StatusOr<std::unique_ptr<BpeTokenizer>> BpeTokenizer::FromFile(
    const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return ErrnoToStatus(errno, absl::StrCat("open ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  auto tok = FromJson(ss.str());
  if (!tok.ok()) return Annotate(tok.status(), path);
  return tok;
}

absl::StatusOr<std::unique_ptr<BpeTokenizer>> BpeTokenizer::FromJson(
    absl::string_view json) {
  std::shared_ptr<Model> model;
  try {
    nlohmann::json root = nlohmann::json::parse(json.begin(), json.end());
    LFT_ASSIGN_OR_RETURN(model, ParseModel(root));
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer.json: ", e.what()));
  }
  return std::unique_ptr<BpeTokenizer>(new BpeTokenizer(std::move(model)));
}

std::unique_ptr<BpeTokenizer> BpeTokenizer::Clone() const {
  return std::unique_ptr<BpeTokenizer>(new BpeTokenizer(model_));
}

int32_t BpeTokenizer::vocab_size() const { return model_->vocab_size; }

std::optional<int32_t> BpeTokenizer::TokenToId(absl::string_view token) const {
  auto it = model_->token_to_id.find(token);
  if (it == model_->token_to_id.end()) return std::nullopt;
  return it->second;
}

std::string BpeTokenizer::IdToToken(int32_t id) const {
  if (id < 0 || id >= model_->vocab_size) return "";
  return model_->id_to_token[id];
}

const std::vector<AddedToken>& BpeTokenizer::added_tokens() const {
  return model_->added;
}

std::vector<int32_t> BpeTokenizer::Encode(absl::string_view text) {
  std::vector<int32_t> ids;
  Encode(text, &ids);
  return ids;
}

void BpeTokenizer::Encode(absl::string_view text, std::vector<int32_t>* ids) {
  const Model& m = *model_;
  for (const Segment& raw : SplitAddedTokens(m.raw_index, text)) {
    if (raw.id >= 0) {
      ids->push_back(raw.id);
      continue;
    }
    absl::string_view piece = text.substr(raw.begin, raw.end - raw.begin);
    std::optional<std::string> normalized;
    if (m.nfc) {
      normalized = NfcNormalizeIfChanged(piece);
      if (normalized.has_value()) piece = *normalized;
    }
    for (const Segment& seg : SplitAddedTokens(m.normalized_index, piece)) {
      if (seg.id >= 0) {
        ids->push_back(seg.id);
      } else {
        EncodePiece(piece.substr(seg.begin, seg.end - seg.begin), ids);
      }
    }
  }
}

void BpeTokenizer::EncodePiece(absl::string_view piece,
                               std::vector<int32_t>* ids) {
  // HF's NormalizedString::prepend is a no-op on an empty string, so an
  // empty piece stays empty even with add_prefix_space.
  if (piece.empty()) return;
  if (model_->add_prefix_space && piece[0] != ' ') {
    scratch_.assign(" ");
    scratch_.append(piece.data(), piece.size());
    std::string prefixed;
    prefixed.swap(scratch_);
    EncodePiece(prefixed, ids);  // starts with ' ' now: no recursion loop
    scratch_.swap(prefixed);
    return;
  }
  if (!model_->use_regex) {
    EncodeWord(piece, ids);
    return;
  }
  for (const auto& [b, e] : SplitGpt2Pretokens(piece)) {
    EncodeWord(piece.substr(b, e - b), ids);
  }
}

void BpeTokenizer::EncodeWord(absl::string_view word,
                              std::vector<int32_t>* ids) {
  const Model& m = *model_;
  bool cacheable = word.size() <= kMaxCachedWordBytes;
  if (cacheable) {
    auto it = cache_.find(word);
    if (it != cache_.end()) {
      // Most cached words are 1-3 tokens: a loop beats insert's memmove.
      for (int32_t id : it->second) ids->push_back(id);
      return;
    }
  }
  std::vector<int32_t> out;
  if (m.ignore_merges) {
    std::string mapped;
    for (unsigned char b : word) mapped += m.byte_to_char[b];
    auto it = m.token_to_id.find(mapped);
    if (it != m.token_to_id.end()) out.push_back(it->second);
  }
  if (out.empty()) {
    // Symbols as a doubly linked list over the bytes (HF Word).
    struct Symbol {
      int32_t id;
      int32_t prev;
      int32_t next;
      bool alive;
    };
    // Scratch reused across words (no allocation per cache miss).
    static thread_local std::vector<Symbol> sym;
    sym.clear();
    for (unsigned char b : word) {
      int32_t id = m.byte_to_id[b];
      if (id < 0) id = m.unk_id;
      if (id < 0) continue;  // HF drops characters missing from the vocab
      int32_t idx = static_cast<int32_t>(sym.size());
      sym.push_back({id, idx - 1, idx + 1, true});
    }
    if (!sym.empty()) sym.back().next = -1;
    // Min-heap on (rank, position), as HF's merge_all.
    struct Candidate {
      int32_t rank;
      int32_t pos;
      int32_t new_id;
      bool operator>(const Candidate& o) const {
        return rank != o.rank ? rank > o.rank : pos > o.pos;
      }
    };
    static thread_local std::vector<Candidate> heap;
    heap.clear();
    const std::greater<Candidate> later;
    auto push_pair = [&](int32_t left) {
      if (left < 0) return;
      int32_t right = sym[left].next;
      if (right < 0) return;
      auto it = m.merges.find(PairKey(sym[left].id, sym[right].id));
      if (it != m.merges.end()) {
        heap.push_back({it->second.first, left, it->second.second});
        std::push_heap(heap.begin(), heap.end(), later);
      }
    };
    for (int32_t i = 0; i + 1 < static_cast<int32_t>(sym.size()); ++i) {
      push_pair(i);
    }
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end(), later);
      Candidate top = heap.back();
      heap.pop_back();
      Symbol& left = sym[top.pos];
      if (!left.alive || left.next < 0) continue;
      Symbol& right = sym[left.next];
      auto it = m.merges.find(PairKey(left.id, right.id));
      if (it == m.merges.end() || it->second.second != top.new_id) continue;
      left.id = top.new_id;
      right.alive = false;
      left.next = right.next;
      if (left.next >= 0) sym[left.next].prev = top.pos;
      push_pair(left.prev);
      push_pair(top.pos);
    }
    for (const Symbol& s : sym) {
      if (s.alive) out.push_back(s.id);
    }
  }
  ids->insert(ids->end(), out.begin(), out.end());
  if (cacheable) {
    if (cache_.size() >= kMaxCacheEntries) cache_.clear();
    cache_.emplace(std::string(word), std::move(out));
  }
}

std::string BpeTokenizer::Decode(absl::Span<const int32_t> ids,
                                 bool skip_special_tokens) const {
  const Model& m = *model_;
  std::string bytes;
  for (int32_t id : ids) {
    if (id < 0 || id >= m.vocab_size) continue;
    if (skip_special_tokens) {
      auto a = m.added_by_id.find(id);
      if (a != m.added_by_id.end() && m.added[a->second].special) continue;
    }
    const std::string& token = m.id_to_token[id];
    // ByteLevel decoder: map every character back to its byte; a token with
    // a character outside the byte alphabet is kept as its UTF-8 bytes.
    size_t mark = bytes.size();
    bool ok = true;
    for (size_t p = 0; p < token.size();) {
      char32_t c = DecodeUtf8(token, &p);
      auto it = m.char_to_byte.find(c);
      if (it == m.char_to_byte.end()) {
        ok = false;
        break;
      }
      bytes.push_back(static_cast<char>(it->second));
    }
    if (!ok) {
      bytes.resize(mark);
      bytes += token;
    }
  }
  // Lossy UTF-8: invalid bytes become U+FFFD.
  std::string out;
  out.reserve(bytes.size());
  for (size_t p = 0; p < bytes.size();) {
    size_t start = p;
    char32_t c = DecodeUtf8(bytes, &p);
    if (c == 0xFFFD || p - start == 1) {
      if (c < 0x80) {
        out.push_back(static_cast<char>(c));
      } else {
        AppendUtf8(c, &out);
      }
    } else {
      out.append(bytes, start, p - start);
    }
  }
  return out;
}

}  // namespace lft
