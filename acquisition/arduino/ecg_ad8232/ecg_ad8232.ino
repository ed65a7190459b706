// ecg_ad8232.ino - timer-driven ECG sampling from an AD8232 board on an Arduino Uno/Nano.
//
// Why not `analogRead` in loop()? Its rate depends on whatever else loop() does and on how
// fast the serial port drains, so the sampling rate is unknown and samples vanish silently.
// Here Timer1 triggers every sample at an exact average rate, the conversion runs in the
// background, and a ring buffer decouples sampling from the serial port. Every sample taken
// gets a sequence number, sent or not, so the receiver sees every loss as a jump.
//
// Protocol (see README.md and acquisition/protocol.py), 115200 baud 8N1, lines end in \n:
//   #ECG device=AD8232-Uno firmware=1.0.0 fs=360 bits=10 seq=0*A2   header
//   1234,517,0*29                                                   seq,value,leads_off
// The two hex digits after '*' are the CRC-8/SMBUS (poly 0x07, init 0) of the bytes before
// the '*'. Commands from the host, one per line: "?" sends the header now; "R250", "R360",
// "R500" change the rate (the counter restarts at 0 after a new header).
//
// Wiring (AD8232 breakout -> Arduino): OUTPUT -> A0, LO+ -> D10, LO- -> D11, 3.3V -> 3.3V,
// GND -> GND. Optional rate jumpers read at boot: D2 to GND = 250 Hz, D3 to GND = 500 Hz.

#include <Arduino.h>

#define DEVICE "AD8232-Uno"
#define FIRMWARE "1.0.0"
#define DEFAULT_RATE_HZ 360
#define BAUD 115200
#define ECG_PIN A0
#define LO_PLUS_PIN 10
#define LO_MINUS_PIN 11
#define JUMPER_250_PIN 2
#define JUMPER_500_PIN 3
#define HEADER_EVERY 2048  // samples between repeated headers (5.7 s at 360 Hz)
#define RING_SIZE 64       // power of two; 64 samples = 178 ms of slack at 360 Hz

struct Entry {
  uint16_t seq;
  uint16_t value;  // bits 0-9: ADC count; bit 15: leads off
};

static volatile Entry ring[RING_SIZE];
static volatile uint8_t ringHead = 0;  // written only by the ISR
static volatile uint8_t ringTail = 0;  // written only by loop()
static volatile uint16_t nextSeq = 0;  // sequence number of the next sample taken
static volatile uint16_t overflows = 0;
static volatile bool conversionStarted = false;
static volatile uint8_t leadsOffAtStart = 0;

// 16 MHz / 360 Hz = 44444.44 timer ticks: not an integer. The ISR spreads the remainder
// over the periods (44444 or 44445 ticks) so the average rate is exact to the crystal.
static volatile uint16_t rateHz = DEFAULT_RATE_HZ;
static volatile uint16_t periodTicks;
static volatile uint16_t periodRemainder;
static volatile uint16_t remainderSum = 0;

static uint16_t sentHeaderFor = 0xFFFF;
static bool headerRequested = false;
static char command[8];
static uint8_t commandLength = 0;

static uint8_t crc8(const char *data, uint8_t length) {
  uint8_t crc = 0;
  for (uint8_t i = 0; i < length; i++) {
    crc ^= (uint8_t)data[i];
    for (uint8_t bit = 0; bit < 8; bit++) {
      crc = (crc & 0x80) ? (uint8_t)((crc << 1) ^ 0x07) : (uint8_t)(crc << 1);
    }
  }
  return crc;
}

// Append "*XX\n" and send the line in one write.
static void sendSealed(char *line, uint8_t length) {
  static const char hex[] = "0123456789ABCDEF";
  uint8_t crc = crc8(line, length);
  line[length++] = '*';
  line[length++] = hex[crc >> 4];
  line[length++] = hex[crc & 0x0F];
  line[length++] = '\n';
  Serial.write((const uint8_t *)line, length);
}

static uint8_t appendNumber(char *out, uint16_t value) {
  char digits[6];
  uint8_t n = 0;
  do {
    digits[n++] = (char)('0' + value % 10);
    value /= 10;
  } while (value);
  for (uint8_t i = 0; i < n; i++) out[i] = digits[n - 1 - i];
  return n;
}

static void sendHeader(uint16_t seq) {
  char line[96];
  int length = snprintf(line, sizeof(line) - 4,
                        "#ECG device=" DEVICE " firmware=" FIRMWARE " fs=%u bits=10 seq=%u",
                        (unsigned)rateHz, (unsigned)seq);
  sendSealed(line, (uint8_t)length);
}

static void sendMessage(const char *text) {
  char line[64];
  int length = snprintf(line, sizeof(line) - 4, "%s", text);
  sendSealed(line, (uint8_t)length);
}

static void sendSample(uint16_t seq, uint16_t value, uint8_t leadsOff) {
  char line[24];
  uint8_t length = appendNumber(line, seq);
  line[length++] = ',';
  length += appendNumber(line + length, value);
  line[length++] = ',';
  line[length++] = leadsOff ? '1' : '0';
  sendSealed(line, length);
}

static void startSampling(uint16_t hz) {
  noInterrupts();
  rateHz = hz;
  periodTicks = (uint16_t)(F_CPU / hz);  // 250 Hz -> 64000: the slowest rate that fits
  periodRemainder = (uint16_t)(F_CPU % hz);
  remainderSum = 0;
  nextSeq = 0;
  ringHead = ringTail = 0;
  conversionStarted = false;
  TCCR1A = 0;
  TCCR1B = 0;
  TCNT1 = 0;
  OCR1A = periodTicks - 1;
  TCCR1B = _BV(WGM12) | _BV(CS10);  // CTC on OCR1A, no prescaler
  TIMSK1 = _BV(OCIE1A);
  interrupts();
  sentHeaderFor = 0xFFFF;
}

ISR(TIMER1_COMPA_vect) {
  remainderSum += periodRemainder;
  uint16_t ticks = periodTicks;
  if (remainderSum >= rateHz) {
    remainderSum -= rateHz;
    ticks += 1;
  }
  OCR1A = ticks - 1;  // in CTC mode this sets the length of the period just begun

  if (conversionStarted) {
    // The conversion started one period ago has long finished (104 us): store it.
    uint16_t value = ADC;
    uint8_t next = (ringHead + 1) & (RING_SIZE - 1);
    if (next != ringTail) {
      ring[ringHead].seq = nextSeq;
      ring[ringHead].value = value | (leadsOffAtStart ? 0x8000 : 0);
      ringHead = next;
    } else {
      overflows++;  // the serial port is behind: this sample is lost, but its number is
    }               // still used, so the receiver sees the gap
    nextSeq++;
  }
  // Start the next conversion now, on the timer tick: the sampling instant does not
  // depend on loop() or on the serial port.
  leadsOffAtStart = (PINB & (_BV(2) | _BV(3))) ? 1 : 0;  // D10 = PB2 (LO+), D11 = PB3 (LO-)
  ADCSRA |= _BV(ADSC);
  conversionStarted = true;
}

static void handleCommand() {
  command[commandLength] = '\0';
  if (strcmp(command, "?") == 0) {
    headerRequested = true;
  } else if (command[0] == 'R') {
    uint16_t hz = (uint16_t)atoi(command + 1);
    if (hz == 250 || hz == 360 || hz == 500) {
      startSampling(hz);  // the header for the new rate goes out before sample 0
    } else {
      sendMessage("#ERR rate must be 250, 360 or 500");
    }
  } else if (commandLength > 0) {
    sendMessage("#ERR unknown command");
  }
  commandLength = 0;
}

static void readCommands() {
  while (Serial.available() > 0) {
    char c = (char)Serial.read();
    if (c == '\n' || c == '\r') {
      handleCommand();
    } else if (commandLength < sizeof(command) - 1) {
      command[commandLength++] = c;
    }
  }
}

void setup() {
  pinMode(LO_PLUS_PIN, INPUT);
  pinMode(LO_MINUS_PIN, INPUT);
  pinMode(JUMPER_250_PIN, INPUT_PULLUP);
  pinMode(JUMPER_500_PIN, INPUT_PULLUP);
  Serial.begin(BAUD);
  // One analogRead sets the reference (AVcc) and the channel; the ISR then only starts
  // conversions. For AREF = 3.3 V see the README (wire AREF before choosing EXTERNAL).
  analogRead(ECG_PIN);
  uint16_t hz = DEFAULT_RATE_HZ;
  if (digitalRead(JUMPER_250_PIN) == LOW) hz = 250;
  if (digitalRead(JUMPER_500_PIN) == LOW) hz = 500;
  startSampling(hz);
}

void loop() {
  readCommands();
  while (ringTail != ringHead) {
    uint8_t tail = ringTail;
    uint16_t seq = ring[tail].seq;
    uint16_t value = ring[tail].value;
    ringTail = (tail + 1) & (RING_SIZE - 1);
    if ((seq % HEADER_EVERY == 0 && seq != sentHeaderFor) || headerRequested) {
      sendHeader(seq);
      sentHeaderFor = seq;
      headerRequested = false;
    }
    // Serial.write blocks while its 64-byte buffer is full; the ISR keeps sampling.
    sendSample(seq, value & 0x03FF, (value & 0x8000) ? 1 : 0);
    readCommands();
  }
}
