package main

// Drivers of brokers and storage beyond the built-in ones register their URL
// schemes when imported; the sluice command links every driver.
import (
	_ "github.com/sluicehq/sluice/brokers/amqp"  // amqp://, amqps:// (RabbitMQ)
	_ "github.com/sluicehq/sluice/brokers/kafka" // kafka://
	_ "github.com/sluicehq/sluice/storage/s3"    // s3://
)
