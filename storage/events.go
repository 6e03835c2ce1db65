package storage

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// ParseEvents turns a notification body from MinIO (webhook or Kafka
// target), AWS S3 (through SNS/SQS/EventBridge-style relays posting the
// record JSON) or Tencent COS into ObjectEvents. It needs no vendor client:
// drivers' webhook receivers and the engine's events_topic reader share it. Test events are skipped; keys are
// query-unescaped as these targets send them; CompleteMultipartUpload is a
// creation like any other.
func ParseEvents(body []byte) ([]ObjectEvent, error) {
	var doc struct {
		Event   string            `json:"Event"` // "s3:TestEvent"
		Records []json.RawMessage `json:"Records"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("notification is not JSON: %w", err)
	}
	if strings.HasSuffix(doc.Event, "TestEvent") {
		return nil, nil
	}
	var out []ObjectEvent
	for _, raw := range doc.Records {
		ev, ok, err := parseRecord(raw)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, ev)
		}
	}
	return out, nil
}

type s3Record struct {
	EventSource string `json:"eventSource"`
	EventTime   string `json:"eventTime"`
	EventName   string `json:"eventName"`
	S3          *struct {
		Bucket struct {
			Name string `json:"name"`
		} `json:"bucket"`
		Object struct {
			Key         string `json:"key"`
			Size        int64  `json:"size"`
			ETag        string `json:"eTag"`
			ContentType string `json:"contentType"`
			VersionID   string `json:"versionId"`
			Sequencer   string `json:"sequencer"`
			// UserMetadata has x-amz-meta-* entries (MinIO records).
			UserMetadata map[string]string `json:"userMetadata"`
		} `json:"object"`
	} `json:"s3"`
	// Tencent COS records.
	Event *struct {
		EventName string `json:"eventName"`
		EventTime int64  `json:"eventTime"`
	} `json:"event"`
	COS *struct {
		Bucket struct {
			Name  string `json:"name"`
			AppID string `json:"appid"`
		} `json:"cosBucket"`
		Object struct {
			Key  string            `json:"key"`
			Size int64             `json:"size"`
			Meta map[string]string `json:"meta"`
			VID  string            `json:"vid"`
		} `json:"cosObject"`
	} `json:"cos"`
}

func parseRecord(raw json.RawMessage) (ObjectEvent, bool, error) {
	var r s3Record
	if err := json.Unmarshal(raw, &r); err != nil {
		return ObjectEvent{}, false, fmt.Errorf("notification record: %w", err)
	}
	switch {
	case r.S3 != nil:
		key, err := url.QueryUnescape(r.S3.Object.Key)
		if err != nil {
			return ObjectEvent{}, false, fmt.Errorf("record key %q: %w", r.S3.Object.Key, err)
		}
		t, _ := time.Parse(time.RFC3339Nano, r.EventTime)
		source := "s3"
		if strings.HasPrefix(r.EventSource, "minio") {
			source = "minio"
		}
		ev := ObjectEvent{
			Name: NormalizeEventName(r.EventName), Bucket: r.S3.Bucket.Name, Key: key, Size: r.S3.Object.Size,
			ETag: strings.Trim(r.S3.Object.ETag, `"`), ContentType: r.S3.Object.ContentType,
			VersionID: r.S3.Object.VersionID, Time: t.UTC(), Source: source, Metadata: UserMetadata(r.S3.Object.UserMetadata),
		}
		if ev.Removed() && ev.ETag == "" {
			// Removal records carry no etag. The sequencer (unique among a
			// key's events) stands in, so each deletion of a key is an
			// event of its own rather than a repeat of the first.
			if r.S3.Object.Sequencer != "" {
				ev.ETag = "seq-" + r.S3.Object.Sequencer
			} else if r.EventTime != "" {
				ev.ETag = "time-" + r.EventTime
			}
		}
		return ev, r.S3.Bucket.Name != "" && key != "", nil
	case r.COS != nil && r.Event != nil:
		// COS keys are "/<appid>/<bucket>/<key>"; bucket names are "<bucket>-<appid>".
		key := r.COS.Object.Key
		prefix := "/" + r.COS.Bucket.AppID + "/" + strings.TrimSuffix(r.COS.Bucket.Name, "-"+r.COS.Bucket.AppID) + "/"
		key = strings.TrimPrefix(key, prefix)
		if k, err := url.QueryUnescape(key); err == nil {
			key = k
		}
		return ObjectEvent{
			Name: NormalizeEventName(r.Event.EventName), Bucket: r.COS.Bucket.Name, Key: key, Size: r.COS.Object.Size,
			ETag: strings.Trim(r.COS.Object.Meta["ETag"], `"`), ContentType: r.COS.Object.Meta["Content-Type"],
			VersionID: r.COS.Object.VID, Time: time.Unix(r.Event.EventTime, 0).UTC(), Source: "cos",
		}, key != "", nil
	}
	return ObjectEvent{}, false, nil
}

// NormalizeEventName gives every event name the "s3:" prefix MinIO uses:
// "ObjectCreated:Put" (AWS) and "cos:ObjectCreated:Put" (COS) become
// "s3:ObjectCreated:Put".
func NormalizeEventName(name string) string {
	name = strings.TrimPrefix(strings.TrimPrefix(name, "s3:"), "cos:")
	return "s3:" + name
}
