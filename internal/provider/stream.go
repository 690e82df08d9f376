package provider

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// Streamer is a Client that can also stream an answer as the API writes
// it: the gateway passes each piece on to its caller at once, so the first
// token is not held until the last.
type Streamer interface {
	Client
	// Stream runs one call as a stream. onText gets each piece of the
	// answer's text as it arrives; an error from it ends the call (the
	// caller left) with ClassCanceled. The Response, once the stream has
	// ended, has the usage (estimated, and marked so, when the API sent
	// none) and the finish. A failure, before the first piece or after
	// some, is always an *Error; a stream that stops before the API's end
	// of answer is ClassConnection.
	Stream(ctx context.Context, req Request, onText func(piece string) error) (*Response, error)
}

// maxEventBytes bounds one line of an event stream.
const maxEventBytes = 1 << 20

// errIncomplete is a stream that ended before the API said the answer was whole.
var errIncomplete = errors.New("the stream ended before the answer did")

// callerError marks an error of onText, so that it reads as the caller's.
type callerError struct{ err error }

func (e callerError) Error() string { return e.err.Error() }

// openStream sends a JSON body and reads a 200's event stream with read;
// done says, after it, whether the API ended its answer. Any other status
// is read in full and classified by errorOf. An error is an *Error: the
// transport's, read's or errorOf's, classified.
func (b *base) openStream(ctx context.Context, url string, payload any, header http.Header,
	read func(body io.Reader) error, done func() bool, errorOf func(*reply) *Error) (*reply, error) {
	header.Set("Accept", "text/event-stream")
	resp, err := b.send(ctx, url, payload, header)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	r := &reply{status: resp.StatusCode, header: resp.Header}
	if resp.StatusCode != http.StatusOK {
		if r.body, err = io.ReadAll(io.LimitReader(resp.Body, b.cfg.MaxResponseBytes)); err != nil {
			return nil, b.fail(transportError(ctx, err))
		}
		return nil, errorOf(r)
	}
	if err := read(io.LimitReader(resp.Body, b.cfg.MaxResponseBytes)); err != nil {
		return nil, b.streamError(ctx, r, err)
	}
	if !done() {
		return nil, b.streamError(ctx, r, errIncomplete)
	}
	return r, nil
}

// streamError classifies a failure while reading a stream.
func (b *base) streamError(ctx context.Context, r *reply, err error) error {
	var pe *Error
	var ce callerError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &pe):
		return b.fail(pe)
	case errors.As(err, &ce):
		return &Error{Class: ClassCanceled, Message: "the caller stopped reading: " + ce.Error()}
	case errors.Is(err, errIncomplete):
		return b.fail(&Error{Class: ClassConnection, StatusCode: r.status, Message: err.Error()})
	}
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	if errors.As(err, &syntax) || errors.As(err, &typ) {
		return b.malformed(r, err)
	}
	return b.fail(transportError(ctx, err))
}

// readEvents reads a server-sent event stream, calling fn with each
// event's name ("" when unnamed) and data. It stops at the first error of
// fn or of the reader.
func readEvents(r io.Reader, fn func(event string, data []byte) error) error {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 0, 4096), maxEventBytes)
	var event string
	var data []byte
	for s.Scan() {
		line := s.Bytes()
		switch {
		case len(line) == 0:
			if data != nil {
				if err := fn(event, data); err != nil {
					return err
				}
			}
			event, data = "", nil
		case bytes.HasPrefix(line, []byte("event:")):
			event = string(bytes.TrimSpace(line[len("event:"):]))
		case bytes.HasPrefix(line, []byte("data:")):
			if data != nil {
				data = append(data, '\n')
			}
			data = append(data, bytes.TrimPrefix(line[len("data:"):], []byte(" "))...)
		}
	}
	if err := s.Err(); err != nil {
		return err
	}
	if data != nil { // the last event, without its blank line
		return fn(event, data)
	}
	return nil
}

// relay passes a piece of text to the caller; an empty piece is not passed.
func relay(onText func(string) error, piece string) error {
	if piece == "" {
		return nil
	}
	if err := onText(piece); err != nil {
		return callerError{err}
	}
	return nil
}

// estimateUsage fills in the part of a streamed answer's usage the API
// did not say, with bounds rather than guesses: a token is at least one
// byte in every tokenizer the APIs use, so the input's and the answer's
// lengths in bytes bound their tokens (the output also by its cap). The
// estimate is marked, and the budget settled from it never under-counts.
func estimateUsage(resp *Response, req Request, inputSaid, outputSaid bool) {
	if !inputSaid {
		resp.UsageEstimated = true
		resp.InputTokens = int64(req.Chars())
	}
	if !outputSaid {
		resp.UsageEstimated = true
		resp.OutputTokens = int64(len(resp.Text))
		if req.MaxTokens > 0 {
			resp.OutputTokens = min(resp.OutputTokens, int64(req.MaxTokens))
		}
	}
}

// streamFailure is an error event inside a stream: the API's own error, in
// its words, classified by status as an HTTP error would be.
func (b *base) streamFailure(status int, message string) *Error {
	e := b.statusError(&reply{status: status, header: http.Header{}}, message)
	if e.Message == "" {
		e.Message = fmt.Sprintf("error event in the stream (%d)", status)
	}
	return e
}
