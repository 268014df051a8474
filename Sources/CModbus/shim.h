#ifndef HALL_GATEWAY_CMODBUS_SHIM_H
#define HALL_GATEWAY_CMODBUS_SHIM_H
#include <modbus/modbus.h>
#include <errno.h>

// libmodbus defines its error codes as expressions, which Swift does not import.
static const int CModbusErrorIllegalFunction = EMBXILFUN;
static const int CModbusErrorIllegalAddress = EMBXILADD;
static const int CModbusErrorIllegalValue = EMBXILVAL;
static const int CModbusErrorSlaveFailure = EMBXSFAIL;
static const int CModbusErrorAcknowledge = EMBXACK;
static const int CModbusErrorSlaveBusy = EMBXSBUSY;
static const int CModbusErrorGatewayPath = EMBXGPATH;
static const int CModbusErrorGatewayTarget = EMBXGTAR;
static const int CModbusErrorBadCRC = EMBBADCRC;
static const int CModbusErrorBadData = EMBBADDATA;
static const int CModbusErrorBadException = EMBBADEXC;
static const int CModbusErrorUnknownException = EMBUNKEXC;
static const int CModbusErrorTooMuchData = EMBMDATA;
static const int CModbusErrorBadSlave = EMBBADSLAVE;

static inline int cmodbus_errno(void) { return errno; }

#endif
