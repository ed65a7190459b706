/* Run the compiled ecg_ad8232 sketch on simavr's ATmega328P, cycle-exact, and log:
 *   A <cycle> <millivolts>   each ADC conversion start (the sampling instant)
 *   U <cycle> <line>         each line the sketch sends on its UART
 * The ECG input is a known sine, LO+ (D10) is held high between two given times, the rate
 * jumpers (D2 -> 250 Hz, D3 -> 500 Hz) are set as asked, and an optional command line is
 * sent to the sketch at 0.5 s. acquisition/arduino/check/run_sketch_check.py builds this and
 * checks the log; see the README there.
 *
 * usage: sim_harness FIRMWARE.elf RATE SECONDS LO_START_S LO_END_S COMMAND|-
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <simavr/avr_adc.h>
#include <simavr/avr_ioport.h>
#include <simavr/avr_uart.h>
#include <simavr/sim_avr.h>
#include <simavr/sim_elf.h>

#define F_CPU 16000000UL

static avr_t *avr;
static char line[256];
static size_t length;

/* simavr sleeps in real time when the firmware idles; a check wants it as fast as it goes. */
static void no_sleep(avr_t *core, avr_cycle_count_t how_long) {
  (void)core;
  (void)how_long;
}

static double seconds(void) { return (double)avr->cycle / F_CPU; }

static void on_uart(struct avr_irq_t *irq, uint32_t value, void *param) {
  (void)irq;
  (void)param;
  if (value == '\n') {
    line[length] = '\0';
    printf("U %llu %s\n", (unsigned long long)avr->cycle, line);
    length = 0;
  } else if (length < sizeof(line) - 1) {
    line[length++] = (char)value;
  }
}

static void on_adc_start(struct avr_irq_t *irq, uint32_t value, void *param) {
  (void)irq;
  (void)value;
  (void)param;
  /* 2.5 V +- 2 V at 1.3 Hz: every count of the 10-bit range is exercised. */
  uint32_t mv = (uint32_t)lround(2500.0 + 2000.0 * sin(2.0 * M_PI * 1.3 * seconds()));
  printf("A %llu %u\n", (unsigned long long)avr->cycle, mv);
  avr_raise_irq(avr_io_getirq(avr, AVR_IOCTL_ADC_GETIRQ, ADC_IRQ_ADC0), mv);
}

int main(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: %s FIRMWARE.elf RATE SECONDS LO_START_S LO_END_S COMMAND|-\n",
            argv[0]);
    return 2;
  }
  int rate = atoi(argv[2]);
  double run_s = atof(argv[3]), lo_start = atof(argv[4]), lo_end = atof(argv[5]);
  const char *command = argv[6];

  elf_firmware_t firmware;
  memset(&firmware, 0, sizeof(firmware));
  if (elf_read_firmware(argv[1], &firmware) != 0) {
    fprintf(stderr, "cannot read %s\n", argv[1]);
    return 2;
  }
  firmware.frequency = F_CPU;
  avr = avr_make_mcu_by_name("atmega328p");
  if (!avr) return 2;
  avr_init(avr);
  avr_load_firmware(avr, &firmware);
  avr->vcc = avr->avcc = avr->aref = 5000;
  avr->sleep = no_sleep;

  uint32_t flags = 0;
  avr_ioctl(avr, AVR_IOCTL_UART_GET_FLAGS('0'), &flags);
  flags &= ~AVR_UART_FLAG_STDIO;
  avr_ioctl(avr, AVR_IOCTL_UART_SET_FLAGS('0'), &flags);
  avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUTPUT),
                          on_uart, NULL);
  avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_ADC_GETIRQ, ADC_IRQ_OUT_TRIGGER),
                          on_adc_start, NULL);

  /* A jumper to GND on D2 or D3: the pin reads low despite the sketch's pull-up. */
  avr_ioport_external_t jumpers = {.name = 'D', .mask = (1 << 2) | (1 << 3),
                                   .value = (uint8_t)((rate == 250 ? 0 : 1 << 2) |
                                                      (rate == 500 ? 0 : 1 << 3))};
  avr_ioctl(avr, AVR_IOCTL_IOPORT_SET_EXTERNAL('D'), &jumpers);
  avr_irq_t *lo_plus = avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ('B'), 2);
  avr_irq_t *lo_minus = avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ('B'), 3);
  avr_raise_irq(lo_plus, 0);
  avr_raise_irq(lo_minus, 0);

  int lo_state = 0, command_sent = 0;
  avr_irq_t *rx = avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_INPUT);
  while (seconds() < run_s) {
    int state = avr_run(avr);
    if (state == cpu_Done || state == cpu_Crashed) {
      fprintf(stderr, "simulated CPU stopped (state %d)\n", state);
      return 1;
    }
    double t = seconds();
    int want = t >= lo_start && t < lo_end;
    if (want != lo_state) {
      avr_raise_irq(lo_plus, want);
      lo_state = want;
      printf("L %llu %d\n", (unsigned long long)avr->cycle, want);
    }
    if (!command_sent && t >= 0.5 && strcmp(command, "-") != 0) {
      for (const char *c = command; *c; c++) avr_raise_irq(rx, (uint8_t)*c);
      avr_raise_irq(rx, '\n');
      command_sent = 1;
      printf("C %llu %s\n", (unsigned long long)avr->cycle, command);
    }
  }
  return 0;
}
