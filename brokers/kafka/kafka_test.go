package kafka_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluicehq/sluice/brokers"
	"github.com/sluicehq/sluice/brokers/inspecttest"
	_ "github.com/sluicehq/sluice/brokers/kafka"
	"github.com/sluicehq/sluice/brokers/streamtest"
)

// kafkaURL starts an in-process Kafka-protocol cluster (kfake) for the test
// and returns a broker URL for it.
func kafkaURL(t *testing.T, params string) string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation())
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return "kafka://" + strings.Join(c.ListenAddrs(), ",") + "?max_wait=20ms&" + params
}

// open opens a broker that is closed at the end of the test.
func open(t *testing.T, url string) brokers.Broker {
	t.Helper()
	b, err := brokers.Open(context.Background(), url, watermill.NopLogger{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// pubSub opens a broker for Watermill's suite; the broker is closed by the
// suite through the subscriber (and at test end).
func pubSub(t *testing.T, url, group string) (message.Publisher, message.Subscriber) {
	t.Helper()
	b := open(t, url)
	sub, err := b.Subscriber(group)
	require.NoError(t, err)
	return b.Publisher(), sub
}

func TestKafkaPubSub(t *testing.T) {
	url := kafkaURL(t, "partitions=8")
	tests.TestPubSub(t,
		tests.Features{
			ConsumerGroups:      true,
			ExactlyOnceDelivery: false,
			GuaranteedOrder:     false,
			Persistent:          true,
		},
		func(t *testing.T) (message.Publisher, message.Subscriber) { return pubSub(t, url, "test") },
		func(t *testing.T, group string) (message.Publisher, message.Subscriber) { return pubSub(t, url, group) },
	)
}

// TestKafkaPubSubOrdered runs the suite on one partition, where Kafka keeps
// publish order.
func TestKafkaPubSubOrdered(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	url := kafkaURL(t, "partitions=1")
	tests.TestPubSub(t,
		tests.Features{
			ConsumerGroups:      true,
			ExactlyOnceDelivery: false,
			GuaranteedOrder:     true,
			Persistent:          true,
		},
		func(t *testing.T) (message.Publisher, message.Subscriber) { return pubSub(t, url, "test") },
		func(t *testing.T, group string) (message.Publisher, message.Subscriber) { return pubSub(t, url, group) },
	)
}

func TestKafkaURLErrors(t *testing.T) {
	for url, want := range map[string]string{
		"kafka://":                           "needs brokers",
		"kafka://h:1?partitions=0":           "partitions must be a positive integer",
		"kafka://h:1?version=banana":         "version",
		"kafka://h:1?sasl=KERBEROS":          "sasl must be",
		"kafka://h:1?sasl=PLAIN":             "needs a user",
		"kafka://u:p@h:1?sasl=SCRAM-SHA-256": "not supported yet",
	} {
		_, err := brokers.Open(context.Background(), url, nil)
		require.ErrorContains(t, err, want, url)
	}
}

func TestKafkaSASLPlain(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser("PLAIN", "sluice", "s3cret"))
	require.NoError(t, err)
	defer c.Close()
	addr := strings.Join(c.ListenAddrs(), ",")

	b, err := brokers.Open(context.Background(), "kafka://sluice:s3cret@"+addr+"?sasl=PLAIN&max_wait=20ms", nil)
	require.NoError(t, err)
	defer b.Close()
	roundTrip(t, b, "secured", "hello")

	t.Setenv("SLUICE_KAFKA_PASSWORD", "wrong")
	t.Setenv("SLUICE_KAFKA_USER", "sluice")
	_, err = brokers.Open(context.Background(), "kafka://"+addr+"?sasl=PLAIN", nil)
	require.Error(t, err, "wrong credentials fail at open")
	require.ErrorContains(t, err, "connect to")
}

// selfSigned returns a TLS server config with a fresh self-signed
// certificate for 127.0.0.1.
func selfSigned(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kfake"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
}

func TestKafkaTLS(t *testing.T) {
	cert := selfSigned(t)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(cert))
	require.NoError(t, err)
	defer c.Close()
	addr := strings.Join(c.ListenAddrs(), ",")

	// The certificate is not trusted: verified TLS refuses it.
	_, err = brokers.Open(context.Background(), "kafka://"+addr+"?tls=true", nil)
	require.Error(t, err)
	// Trusted through tls_ca, it is accepted.
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificates[0].Certificate[0]}), 0o644))
	_, err = brokers.Open(context.Background(), "kafka://"+addr+"?tls=true&tls_ca=/no/such/ca.pem", nil)
	require.ErrorContains(t, err, "tls_ca")

	b, err := brokers.Open(context.Background(), "kafka://"+addr+"?tls=true&tls_ca="+caFile+"&max_wait=20ms", nil)
	require.NoError(t, err)
	defer b.Close()
	roundTrip(t, b, "over-tls", "sealed")
}

// roundTrip publishes payload to topic and receives it back.
func roundTrip(t *testing.T, b brokers.Broker, topic, payload string) {
	t.Helper()
	sub, err := b.Subscriber("g")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ch, err := sub.Subscribe(ctx, topic)
	require.NoError(t, err)
	require.NoError(t, b.Publisher().Publish(topic, message.NewMessage("m-1", []byte(payload))))
	select {
	case m := <-ch:
		m.Ack()
		require.Equal(t, payload, string(m.Payload))
	case <-ctx.Done():
		t.Fatalf("no message on %s", topic)
	}
}

func TestKafkaStream(t *testing.T) {
	url := kafkaURL(t, "partitions=3")
	streamtest.Run(t, func(t *testing.T) brokers.Broker { return open(t, url) })
}

// A subscriber's messages carry their record's partition, offset and
// timestamp, read through brokers without watermill-kafka's context keys;
// a nacked message comes again with the same position.
func TestKafkaSubscriberPosition(t *testing.T) {
	b := open(t, kafkaURL(t, "partitions=1"))
	sub, err := b.Subscriber("g")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ch, err := sub.Subscribe(ctx, "positions")
	require.NoError(t, err)
	before := time.Now().Add(-time.Second)
	for _, id := range []string{"a", "b"} {
		require.NoError(t, b.Publisher().Publish("positions", message.NewMessage(id, []byte(id))))
	}
	after := time.Now().Add(time.Second)
	next := func() *message.Message {
		select {
		case m := <-ch:
			return m
		case <-ctx.Done():
			t.Fatal("no message")
			return nil
		}
	}
	type pos struct {
		id        string
		partition int32
		offset    int64
	}
	at := func(m *message.Message) pos {
		p, o, ok := brokers.Position(m)
		require.True(t, ok, "position of %s", m.UUID)
		ts, ok := brokers.Timestamp(m)
		require.True(t, ok, "timestamp of %s", m.UUID)
		assert.True(t, ts.After(before) && ts.Before(after), "timestamp %v", ts)
		return pos{m.UUID, p, o}
	}
	m := next()
	first := at(m)
	m.Nack()
	m = next()
	assert.Equal(t, first, at(m), "a redelivery has the same position")
	m.Ack()
	m = next()
	assert.Equal(t, pos{"b", first.partition, first.offset + 1}, at(m))
	m.Ack()
}

func TestKafkaInspector(t *testing.T) {
	inspecttest.Run(t, kafkaURL(t, "partitions=3"))
}
