#include "io/tokenizer_spm.h"

#include <sentencepiece_processor.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>

#include "engine/error.h"

namespace arq::io {

SpmTokenizer::SpmTokenizer(const std::string& model_path)
    : sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()), path_(model_path) {
  ARQ_CHECK(std::filesystem::is_regular_file(model_path), IoError, "sentencepiece model '", model_path,
            "' does not exist or is not a file");
  const auto st = sp_->Load(model_path);
  ARQ_CHECK(st.ok(), IoError, "sentencepiece model '", model_path, "' could not be loaded: ", st.ToString());
  special_.bos = sp_->bos_id();
  special_.eos = sp_->eos_id();
  special_.pad = sp_->pad_id();
  special_.unk = sp_->unk_id();
  if (special_.eos >= 0) special_.eos_ids = {special_.eos};
  // Llama-2 / Mistral convention (HF LlamaTokenizer default): BOS yes, EOS no; a
  // tokenizer_config.json next to the model may override both.
  special_.add_bos = special_.bos >= 0;
  special_.add_eos = false;
  for (int i = 0; i < sp_->GetPieceSize(); ++i) {
    if (sp_->IsControl(i) && !sp_->IdToPiece(i).empty()) controls_.emplace_back(sp_->IdToPiece(i), i);
  }
  std::stable_sort(controls_.begin(), controls_.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
}

SpmTokenizer::~SpmTokenizer() = default;

void SpmTokenizer::encode_text(std::string_view text, bool parse_special, std::vector<int32_t>& out) const {
  auto encode_plain = [&](std::string_view seg) {
    if (seg.empty()) return;
    std::vector<int> ids;
    const auto st = sp_->Encode(absl::string_view(seg.data(), seg.size()), &ids);
    ARQ_CHECK(st.ok(), IoError, "sentencepiece '", path_, "': encode failed: ", st.ToString());
    out.insert(out.end(), ids.begin(), ids.end());
  };
  if (!parse_special || controls_.empty()) {
    encode_plain(text);
    return;
  }
  size_t start = 0;
  for (size_t i = 0; i < text.size();) {
    bool hit = false;
    for (const auto& [piece, id] : controls_) {
      if (text.compare(i, piece.size(), piece) == 0) {
        encode_plain(text.substr(start, i - start));
        out.push_back(id);
        i += piece.size();
        start = i;
        hit = true;
        break;
      }
    }
    if (!hit) ++i;
  }
  encode_plain(text.substr(start));
}

std::string SpmTokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  // sentencepiece drops control tokens on decode; without skip_special we keep their text so
  // that a round trip of "<s>text" written in the input gives it back.
  std::string out;
  std::vector<int> run;
  auto flush = [&]() {
    if (run.empty()) return;
    std::string s;
    const auto st = sp_->Decode(run, &s);
    ARQ_CHECK(st.ok(), IoError, "sentencepiece '", path_, "': decode failed: ", st.ToString());
    out += s;
    run.clear();
  };
  for (int32_t id : ids) {
    ARQ_CHECK(id >= 0 && id < sp_->GetPieceSize(), Error, "sentencepiece '", path_, "': token id ", id,
              " out of range [0, ", sp_->GetPieceSize(), ")");
    if (sp_->IsControl(id)) {
      flush();
      if (!skip_special) out += sp_->IdToPiece(id);
      continue;
    }
    run.push_back(id);
  }
  flush();
  return out;
}

int64_t SpmTokenizer::vocab_size() const { return sp_->GetPieceSize(); }

std::string SpmTokenizer::id_to_piece(int32_t id) const {
  ARQ_CHECK(id >= 0 && id < sp_->GetPieceSize(), Error, "sentencepiece '", path_, "': token id ", id,
            " out of range [0, ", sp_->GetPieceSize(), ")");
  return sp_->IdToPiece(id);
}

int32_t SpmTokenizer::piece_to_id(std::string_view piece) const {
  const int id = sp_->PieceToId(absl::string_view(piece.data(), piece.size()));
  // PieceToId answers unk_id for unknown pieces.
  if (id == sp_->unk_id() && sp_->IdToPiece(id) != piece) return -1;
  return id;
}

float SpmTokenizer::score(int32_t id) const {
  (void)id_to_piece(id);  // range check
  return sp_->GetScore(id);
}

int32_t SpmTokenizer::token_type(int32_t id) const {
  (void)id_to_piece(id);  // range check
  if (sp_->IsUnknown(id)) return 2;
  if (sp_->IsControl(id)) return 3;
  if (sp_->IsUnused(id)) return 5;
  if (sp_->IsByte(id)) return 6;
  return 1;
}

namespace {

// Just enough protobuf wire format to walk ModelProto → NormalizerSpec (no generated code:
// libsentencepiece does not install sentencepiece_model.pb.h).
struct WireReader {
  std::string_view buf;
  size_t pos = 0;
  bool ok = true;
  bool done() const { return !ok || pos >= buf.size(); }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos >= buf.size()) break;
      const auto c = static_cast<uint8_t>(buf[pos++]);
      v |= static_cast<uint64_t>(c & 0x7F) << shift;
      if ((c & 0x80) == 0) return v;
    }
    ok = false;
    return 0;
  }
  // Reads one field: its number, and its payload (a varint value or a length-delimited view).
  bool next(uint32_t& field, uint64_t& value, std::string_view& bytes) {
    const uint64_t key = varint();
    if (!ok) return false;
    field = static_cast<uint32_t>(key >> 3);
    switch (key & 7) {
      case 0: value = varint(); return ok;
      case 1: pos += 8; break;
      case 5: pos += 4; break;
      case 2: {
        const uint64_t n = varint();
        if (!ok || n > buf.size() - pos) return ok = false;
        bytes = buf.substr(pos, n);
        pos += n;
        return true;
      }
      default: return ok = false;
    }
    if (pos > buf.size()) return ok = false;
    return true;
  }
};

}  // namespace

SpmTokenizer::NormalizerFlags SpmTokenizer::normalizer_flags() const {
  NormalizerFlags f;
  const std::string proto = sp_->serialized_model_proto();
  WireReader model{proto};
  uint32_t field = 0;
  uint64_t value = 0;
  std::string_view bytes;
  while (!model.done() && model.next(field, value, bytes)) {
    if (field != 3) continue;   // ModelProto.normalizer_spec
    WireReader spec{bytes};
    while (!spec.done() && spec.next(field, value, bytes)) {
      if (field == 1) f.name = std::string(bytes);
      else if (field == 2) f.precompiled_charsmap = std::string(bytes);
      else if (field == 3) f.add_dummy_prefix = value != 0;
      else if (field == 4) f.remove_extra_whitespaces = value != 0;
      else if (field == 5) f.escape_whitespaces = value != 0;
    }
    ARQ_CHECK(spec.ok, IoError, "sentencepiece model '", path_, "': malformed normalizer_spec");
  }
  ARQ_CHECK(model.ok, IoError, "sentencepiece model '", path_, "': malformed model proto");
  return f;
}

}  // namespace arq::io
