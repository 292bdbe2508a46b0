// Everything in core/optim, for convenience.
#pragma once
#include "core/optim/adagrad.h"
#include "core/optim/adam.h"
#include "core/optim/adamax.h"
#include "core/optim/clip_grad.h"
#include "core/optim/lr_schedule.h"
#include "core/optim/nadam.h"
#include "core/optim/optimizer.h"
#include "core/optim/rmsprop.h"
#include "core/optim/sgd.h"
