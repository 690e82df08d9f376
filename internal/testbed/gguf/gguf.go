// Package gguf writes tiny, randomly initialised llama models in the GGUF
// v3 format, with the standard library alone, so tests can run a real
// Ollama server without downloading weights. The models generate noise;
// tests must bound generation (num_predict) and never assert the text.
package gguf

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
)

// Shape is a generated model's size.
type Shape struct {
	Embedding, Layers, Heads, FFN, Context uint64
}

// Tiny loads in milliseconds: what the tests run.
var Tiny = Shape{Embedding: 64, Layers: 2, Heads: 4, FFN: 128, Context: 2048}

// Large is about 3.2 GiB of f32 weights: enough to see on a GPU (the GPU
// check loads two).
var Large = Shape{Embedding: 2048, Layers: 16, Heads: 16, FFN: 5504, Context: 4096}

const alignment = 32

// Value types of GGUF metadata.
const (
	typeUint32  = 4
	typeInt32   = 5
	typeFloat32 = 6
	typeBool    = 7
	typeString  = 8
	typeArray   = 9
)

// words extend the byte vocabulary with some pieces; all distinct, since a
// duplicate token aborts ollama serve.
var words = []string{"▁the", "▁a", "▁market", "▁bullish", "▁bearish", "▁neutral", "▁stock", "▁earnings", "▁up", "▁down", "s", "ed", "ing", "▁is", "▁of", "▁to"}

type kv struct {
	key   string
	typ   uint32
	value any
}

type tensor struct {
	name string
	dims []uint64
}

// Write writes a tiny llama model whose weights come from seed: models
// from different seeds are distinct files, so Ollama runs them apart.
func Write(w io.Writer, seed uint64) error { return WriteShape(w, seed, Tiny) }

// tensorsOf lists a llama model's tensors, in ggml order: the first
// dimension is the contiguous one.
func tensorsOf(sh Shape, vocab uint64) []tensor {
	embedding, ffn := sh.Embedding, sh.FFN
	tensors := []tensor{{"token_embd.weight", []uint64{embedding, vocab}}, {"output_norm.weight", []uint64{embedding}}, {"output.weight", []uint64{embedding, vocab}}}
	for l := range sh.Layers {
		p := fmt.Sprintf("blk.%d.", l)
		tensors = append(tensors,
			tensor{p + "attn_norm.weight", []uint64{embedding}},
			tensor{p + "attn_q.weight", []uint64{embedding, embedding}},
			tensor{p + "attn_k.weight", []uint64{embedding, embedding}},
			tensor{p + "attn_v.weight", []uint64{embedding, embedding}},
			tensor{p + "attn_output.weight", []uint64{embedding, embedding}},
			tensor{p + "ffn_norm.weight", []uint64{embedding}},
			tensor{p + "ffn_gate.weight", []uint64{embedding, ffn}},
			tensor{p + "ffn_up.weight", []uint64{embedding, ffn}},
			tensor{p + "ffn_down.weight", []uint64{ffn, embedding}},
		)
	}
	return tensors
}

// WriteShape writes a llama model of the given shape.
func WriteShape(w io.Writer, seed uint64, sh Shape) error {
	embedding, layers, heads, ffn, context := sh.Embedding, sh.Layers, sh.Heads, sh.FFN, sh.Context
	var hdr bytes.Buffer
	tokens := []string{"<unk>", "<s>", "</s>"}
	types := []int32{2, 3, 3} // unknown, control, control
	for b := range 256 {
		tokens = append(tokens, fmt.Sprintf("<0x%02X>", b))
		types = append(types, 6) // byte
	}
	for _, w := range words {
		tokens = append(tokens, w)
		types = append(types, 1) // normal
	}
	vocab := uint64(len(tokens))
	scores := make([]float32, len(tokens))
	for i := range scores {
		scores[i] = -float32(i)
	}

	meta := []kv{
		{"general.architecture", typeString, "llama"},
		{"general.name", typeString, fmt.Sprintf("tiny-%d", seed)},
		{"general.file_type", typeUint32, uint32(0)},
		{"general.alignment", typeUint32, uint32(alignment)},
		{"llama.context_length", typeUint32, uint32(context)},
		{"llama.embedding_length", typeUint32, uint32(embedding)},
		{"llama.block_count", typeUint32, uint32(layers)},
		{"llama.feed_forward_length", typeUint32, uint32(ffn)},
		{"llama.attention.head_count", typeUint32, uint32(heads)},
		{"llama.attention.head_count_kv", typeUint32, uint32(heads)},
		{"llama.attention.layer_norm_rms_epsilon", typeFloat32, float32(1e-5)},
		{"llama.rope.dimension_count", typeUint32, uint32(embedding / heads)},
		{"llama.rope.freq_base", typeFloat32, float32(10000)},
		{"llama.vocab_size", typeUint32, uint32(vocab)},
		{"tokenizer.ggml.model", typeString, "llama"},
		{"tokenizer.ggml.tokens", typeArray, tokens},
		{"tokenizer.ggml.scores", typeArray, scores},
		{"tokenizer.ggml.token_type", typeArray, types},
		{"tokenizer.ggml.unknown_token_id", typeUint32, uint32(0)},
		{"tokenizer.ggml.bos_token_id", typeUint32, uint32(1)},
		{"tokenizer.ggml.eos_token_id", typeUint32, uint32(2)},
		{"tokenizer.ggml.add_bos_token", typeBool, true},
		{"tokenizer.ggml.add_eos_token", typeBool, false},
	}
	tensors := tensorsOf(sh, vocab)

	le := func(v any) { _ = binary.Write(&hdr, binary.LittleEndian, v) }
	str := func(s string) { le(uint64(len(s))); hdr.WriteString(s) }
	hdr.WriteString("GGUF")
	le(uint32(3))
	le(uint64(len(tensors)))
	le(uint64(len(meta)))
	for _, m := range meta {
		str(m.key)
		le(m.typ)
		switch v := m.value.(type) {
		case string:
			str(v)
		case []string:
			le(uint32(typeString))
			le(uint64(len(v)))
			for _, s := range v {
				str(s)
			}
		case []float32:
			le(uint32(typeFloat32))
			le(uint64(len(v)))
			le(v)
		case []int32:
			le(uint32(typeInt32))
			le(uint64(len(v)))
			le(v)
		default:
			le(v)
		}
	}
	offset := uint64(0)
	for _, t := range tensors {
		str(t.name)
		le(uint32(len(t.dims)))
		le(t.dims)
		le(uint32(0)) // F32
		le(offset)
		offset += pad(4 * count(t.dims))
	}
	// The tensor data starts at the next multiple of the alignment.
	hdr.Write(make([]byte, pad(uint64(hdr.Len()))-uint64(hdr.Len())))
	bw := bufio.NewWriter(w)
	if _, err := bw.Write(hdr.Bytes()); err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(seed, 0x99))
	var buf [4]byte
	for _, t := range tensors {
		n := count(t.dims)
		for range n {
			v := float32(1) // norm weights
			if len(t.dims) > 1 {
				v = float32(r.NormFloat64() * 0.02)
			}
			binary.LittleEndian.PutUint32(buf[:], math.Float32bits(v))
			_, _ = bw.Write(buf[:])
		}
		_, _ = bw.Write(make([]byte, pad(4*n)-4*n))
	}
	return bw.Flush()
}

func count(dims []uint64) uint64 {
	n := uint64(1)
	for _, d := range dims {
		n *= d
	}
	return n
}

func pad(n uint64) uint64 { return (n + alignment - 1) / alignment * alignment }
