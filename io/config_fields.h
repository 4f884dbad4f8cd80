// Internal to io/: the field list of each config family, written once as a template over a
// visitor so that the reader (config.cpp) and the writer (config_write.cpp) cannot drift apart.
// A visitor provides: i64, nullable_i64 (null → 0 "unresolved"), opt_i64, f64, opt_f64,
// boolean, str, i64_list, str_list, plus the special fields eos, rope, dtype, architectures,
// vision.
#pragma once

#include "io/config.h"

namespace arq::io::detail {

template <class V>
void visit_fields(V& v, DecoderConfig& c) {
  v.architectures(c.architectures);
  v.i64("vocab_size", c.vocab_size);
  v.i64("hidden_size", c.hidden_size);
  v.i64("intermediate_size", c.intermediate_size);
  v.i64("num_hidden_layers", c.num_hidden_layers);
  v.i64("num_attention_heads", c.num_attention_heads);
  v.nullable_i64("num_key_value_heads", c.num_key_value_heads);
  v.nullable_i64("head_dim", c.head_dim);
  v.str("hidden_act", c.hidden_act);
  v.i64("max_position_embeddings", c.max_position_embeddings);
  v.f64("rms_norm_eps", c.rms_norm_eps);
  v.rope(c.rope_theta, c.rope_scaling);
  v.boolean("attention_bias", c.attention_bias);
  v.boolean("mlp_bias", c.mlp_bias);
  v.boolean("tie_word_embeddings", c.tie_word_embeddings);
  v.dtype(c.torch_dtype);
  v.opt_i64("bos_token_id", c.bos_token_id);
  v.eos(c.eos_token_id);
  v.opt_i64("pad_token_id", c.pad_token_id);
  v.f64("initializer_range", c.initializer_range);
}

template <class V>
void visit_fields(V& v, LlamaConfig& c) {
  visit_fields(v, static_cast<DecoderConfig&>(c));
  v.i64("pretraining_tp", c.pretraining_tp);
}

template <class V>
void visit_fields(V& v, MistralConfig& c) {
  visit_fields(v, static_cast<DecoderConfig&>(c));
  v.opt_i64("sliding_window", c.sliding_window);
}

template <class V>
void visit_fields(V& v, MixtralConfig& c) {
  visit_fields(v, static_cast<MistralConfig&>(c));
  v.i64("num_local_experts", c.num_local_experts);
  v.i64("num_experts_per_tok", c.num_experts_per_tok);
  v.f64("router_aux_loss_coef", c.router_aux_loss_coef);
  v.f64("router_jitter_noise", c.router_jitter_noise);
}

template <class V>
void visit_fields(V& v, Qwen2Config& c) {
  visit_fields(v, static_cast<DecoderConfig&>(c));
  v.boolean("use_sliding_window", c.use_sliding_window);
  v.opt_i64("sliding_window", c.sliding_window);
  v.i64("max_window_layers", c.max_window_layers);
  v.str_list("layer_types", c.layer_types);
}

template <class V>
void visit_fields(V& v, Qwen3Config& c) {
  visit_fields(v, static_cast<Qwen2Config&>(c));
}

template <class V>
void visit_fields(V& v, Qwen2MoeConfig& c) {
  visit_fields(v, static_cast<Qwen2Config&>(c));
  v.i64("num_experts", c.num_experts);
  v.i64("num_experts_per_tok", c.num_experts_per_tok);
  v.i64("moe_intermediate_size", c.moe_intermediate_size);
  v.i64("shared_expert_intermediate_size", c.shared_expert_intermediate_size);
  v.boolean("norm_topk_prob", c.norm_topk_prob);
  v.i64("decoder_sparse_step", c.decoder_sparse_step);
  v.i64_list("mlp_only_layers", c.mlp_only_layers);
  v.f64("router_aux_loss_coef", c.router_aux_loss_coef);
  v.boolean("qkv_bias", c.qkv_bias);
}

template <class V>
void visit_fields(V& v, Qwen3MoeConfig& c) {
  visit_fields(v, static_cast<Qwen2Config&>(c));
  v.i64("num_experts", c.num_experts);
  v.i64("num_experts_per_tok", c.num_experts_per_tok);
  v.i64("moe_intermediate_size", c.moe_intermediate_size);
  v.boolean("norm_topk_prob", c.norm_topk_prob);
  v.i64("decoder_sparse_step", c.decoder_sparse_step);
  v.i64_list("mlp_only_layers", c.mlp_only_layers);
  v.f64("router_aux_loss_coef", c.router_aux_loss_coef);
}

template <class V>
void visit_fields(V& v, DeepseekV2Config& c) {
  visit_fields(v, static_cast<DecoderConfig&>(c));
  v.opt_i64("q_lora_rank", c.q_lora_rank);
  v.i64("kv_lora_rank", c.kv_lora_rank);
  v.i64("qk_nope_head_dim", c.qk_nope_head_dim);
  v.i64("qk_rope_head_dim", c.qk_rope_head_dim);
  v.i64("v_head_dim", c.v_head_dim);
  v.i64("moe_intermediate_size", c.moe_intermediate_size);
  v.opt_i64("n_routed_experts", c.n_routed_experts);
  v.opt_i64("n_shared_experts", c.n_shared_experts);
  v.opt_i64("num_experts_per_tok", c.num_experts_per_tok);
  v.opt_i64("n_group", c.n_group);
  v.opt_i64("topk_group", c.topk_group);
  v.str("topk_method", c.topk_method);
  v.str("scoring_func", c.scoring_func);
  v.boolean("norm_topk_prob", c.norm_topk_prob);
  v.f64("routed_scaling_factor", c.routed_scaling_factor);
  v.i64("first_k_dense_replace", c.first_k_dense_replace);
  v.i64("moe_layer_freq", c.moe_layer_freq);
  v.i64("num_nextn_predict_layers", c.num_nextn_predict_layers);
  v.boolean("rope_interleave", c.rope_interleave);
}

template <class V>
void visit_fields(V& v, DeepseekV3Config& c) {
  visit_fields(v, static_cast<DeepseekV2Config&>(c));
}

template <class V>
void visit_vision(V& v, Qwen2VLVisionConfig& c) {
  v.i64("depth", c.depth);
  v.i64("embed_dim", c.embed_dim);
  v.i64("hidden_size", c.hidden_size);
  v.str("hidden_act", c.hidden_act);
  v.i64("mlp_ratio", c.mlp_ratio);
  v.i64("num_heads", c.num_heads);
  v.in_chans(c.in_chans);
  v.i64("patch_size", c.patch_size);
  v.i64("spatial_merge_size", c.spatial_merge_size);
  v.i64("temporal_patch_size", c.temporal_patch_size);
}

template <class V>
void visit_fields(V& v, Qwen2VLConfig& c) {
  visit_fields(v, static_cast<Qwen2Config&>(c));
  v.vision(c.vision_config);
  v.i64("image_token_id", c.image_token_id);
  v.i64("video_token_id", c.video_token_id);
  v.i64("vision_start_token_id", c.vision_start_token_id);
  v.i64("vision_end_token_id", c.vision_end_token_id);
}

// Architecture class name written when a config has none.
const char* default_architecture(const std::string& model_type);

}  // namespace arq::io::detail
