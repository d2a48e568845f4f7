// Receives webhookd deliveries and verifies their Standard Webhooks v1a (Ed25519) signatures.
// Run: WEBHOOK_SECRET=whpk_... PORT=8000 go run verify_ed25519.go   (Go 1.19+, standard library)
package main

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// A captured delivery replayed later is refused: its signed timestamp has gone stale.
const tolerance = 5 * time.Minute

// check answers "" when the delivery is authentic, else why it is not.
func check(key ed25519.PublicKey, h http.Header, body []byte) string {
	id, timestamp, signatures := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || timestamp == "" || signatures == "" {
		return "missing webhook headers"
	}
	sentAt, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return "malformed timestamp"
	}
	if age := time.Since(time.Unix(sentAt, 0)); age > tolerance || age < -tolerance {
		return "timestamp too old or too new"
	}
	// Verify the raw bytes as received: parsed and re-serialized JSON would differ.
	signed := append([]byte(id+"."+timestamp+"."), body...)
	// During a key rotation several entries come, one per key: any one may verify.
	for _, entry := range strings.Fields(signatures) {
		if !strings.HasPrefix(entry, "v1a,") {
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(entry[4:])
		if err == nil && ed25519.Verify(key, signed, sig) {
			return ""
		}
	}
	return "no matching signature"
}

func main() {
	// The key is the base64 after "whpk_", decoded: the endpoint's 32-byte public key. It only
	// verifies; the private key that signs never leaves webhookd.
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(os.Getenv("WEBHOOK_SECRET"), "whpk_"))
	if err != nil || len(raw) != ed25519.PublicKeySize {
		log.Fatal("WEBHOOK_SECRET is not a whpk_ public key")
	}
	key := ed25519.PublicKey(raw)
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		reason := "unreadable body"
		if body, err := io.ReadAll(r.Body); err == nil {
			reason = check(key, r.Header, body)
		}
		if reason == "" {
			fmt.Println("verified", r.Header.Get("webhook-id")) // os.Stdout is unbuffered
			w.WriteHeader(http.StatusNoContent)
		} else {
			fmt.Println("rejected", reason)
			w.WriteHeader(http.StatusBadRequest)
		}
	})
	log.Fatal(http.ListenAndServe("127.0.0.1:"+os.Getenv("PORT"), nil))
}
