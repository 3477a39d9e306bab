package comfyui

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"time"

	"github.com/coder/websocket"
)

// wsReadLimit raises coder/websocket's 32 KiB read cap: preview frames are
// larger (§1.6 Go note).
const wsReadLimit = 64 << 20

// event is a text frame of the websocket (§1.6): {"type", "data"}.
type event struct {
	Type string    `json:"type"`
	Data eventData `json:"data"`
}

// eventData holds the fields of the frames Wait reads.
type eventData struct {
	PromptID string `json:"prompt_id"`
	// Node is the executing node; nil in executing{node:null}, the done
	// marker (§1.5).
	Node *string `json:"node"`
	// Nodes are execution_cached's cached nodes.
	Nodes []string `json:"nodes"`
	// Value and Max are a progress frame's steps.
	Value float64 `json:"value"`
	Max   float64 `json:"max"`
}

// wsURL is the websocket address of server base for clientID.
func wsURL(base, clientID string) string {
	u := base
	switch {
	case strings.HasPrefix(u, "https://"):
		u = "wss://" + strings.TrimPrefix(u, "https://")
	case strings.HasPrefix(u, "http://"):
		u = "ws://" + strings.TrimPrefix(u, "http://")
	}
	return u + "/ws?clientId=" + url.QueryEscape(clientID)
}

// listen follows the websocket of server base as clientID until ctx ends,
// sending the frames about prompt id to out. A dropped or refused socket
// is dialled again after retry; frames sent meanwhile are lost (§1.6 "no
// buffering"), which the caller's polling makes up for. No Origin header
// is sent (§1.1 security middleware).
func (e *Executor) listen(ctx context.Context, base, clientID, id string, out chan<- event, retry time.Duration) {
	for ctx.Err() == nil {
		e.follow(ctx, base, clientID, id, out)
		select {
		case <-ctx.Done():
		case <-time.After(retry):
		}
	}
}

// follow reads one socket until it fails or ctx ends.
func (e *Executor) follow(ctx context.Context, base, clientID, id string, out chan<- event) {
	dctx, cancel := context.WithTimeout(ctx, e.requestTimeout)
	conn, _, err := websocket.Dial(dctx, wsURL(base, clientID), &websocket.DialOptions{HTTPClient: e.wsClient})
	cancel()
	if err != nil {
		return
	}
	defer conn.CloseNow()
	conn.SetReadLimit(wsReadLimit)
	for {
		typ, data, err := conn.Read(ctx)
		if err != nil {
			return
		}
		if typ != websocket.MessageText {
			continue // previews (§1.6 binary frames)
		}
		var ev event
		if json.Unmarshal(data, &ev) != nil || (ev.Data.PromptID != "" && ev.Data.PromptID != id) {
			continue
		}
		select {
		case out <- ev:
		case <-ctx.Done():
			return
		}
	}
}
