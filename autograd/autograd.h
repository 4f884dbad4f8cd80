// Everything in autograd/: Var and backward, differentiable ops, losses, optimizers, checks.
#pragma once

#include "autograd/gradcheck.h"
#include "autograd/loss.h"
#include "autograd/ops.h"
#include "autograd/optim.h"
#include "autograd/var.h"
