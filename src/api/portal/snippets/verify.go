// Receives webhookd deliveries and verifies their Standard Webhooks v1 signatures.
// Run: WEBHOOK_SECRET=whsec_... PORT=8000 go run verify.go   (Go 1.19+, standard library)
package main

import (
	"crypto/hmac"
	"crypto/sha256"
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
func check(key []byte, h http.Header, body []byte) string {
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
	// Sign the raw bytes as received: parsed and re-serialized JSON would differ.
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%s.", id, timestamp)
	mac.Write(body)
	expected := []byte(base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	// During a secret rotation several entries come, one per secret: any one may match.
	for _, entry := range strings.Fields(signatures) {
		// hmac.Equal takes as long wherever the two differ, so timing leaks nothing.
		if strings.HasPrefix(entry, "v1,") && hmac.Equal([]byte(entry[3:]), expected) {
			return ""
		}
	}
	return "no matching signature"
}

func main() {
	// The key is the base64 after "whsec_", decoded; not the secret's text itself.
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(os.Getenv("WEBHOOK_SECRET"), "whsec_"))
	if err != nil {
		log.Fatal("WEBHOOK_SECRET is not a whsec_ secret: ", err)
	}
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
