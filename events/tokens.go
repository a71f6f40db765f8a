package events

import (
	"encoding/json"
	"fmt"

	"council.dev/shared/council"
)

// TokenMessage is the JSON body of a streamed token message on the NATS
// subject council.stream.<deliberation>.<agent> (stream COUNCIL_TOKENS; the
// tokens channel of asyncapi.yaml). Attempt is the attempt of the work
// item the completion answers (a retried generation streams under its new
// attempt: readers keep the text of each attempt apart). Seq numbers the
// pieces of one completion (one attempt) from 1, increasing; a message that
// coalesces several pieces (natsjs.TokenPublisher) carries the number of its
// last, so numbers may skip. The last message has Final set and no text.
// Messages written before attempts were carried have none (0).
type TokenMessage struct {
	DeliberationID string `json:"deliberation_id"`
	AgentID        string `json:"agent_id"`
	Stage          int    `json:"stage"`
	Attempt        int    `json:"attempt,omitempty"`
	Seq            int    `json:"seq"`
	Text           string `json:"text"`
	// Final marks the last message of a completion; Text is empty then.
	Final bool `json:"final"`
}

// EncodeToken returns the message body of c.
func EncodeToken(c council.TokenChunk) ([]byte, error) {
	b, err := json.Marshal(TokenMessage{
		DeliberationID: c.DeliberationID, AgentID: c.AgentID, Stage: c.Stage, Attempt: c.Attempt, Seq: c.Seq, Text: c.Text, Final: c.Final,
	})
	if err != nil {
		return nil, fmt.Errorf("events: encode token %s/%s: %w: %w", c.DeliberationID, c.AgentID, council.ErrInvalid, err)
	}
	return b, nil
}

// DecodeToken reads a token message body. An error wraps council.ErrInvalid.
func DecodeToken(b []byte) (council.TokenChunk, error) {
	var m TokenMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return council.TokenChunk{}, fmt.Errorf("events: decode token: %w: %w", council.ErrInvalid, err)
	}
	return council.TokenChunk{
		DeliberationID: m.DeliberationID, AgentID: m.AgentID, Stage: m.Stage, Attempt: m.Attempt, Seq: m.Seq, Text: m.Text, Final: m.Final,
	}, nil
}
